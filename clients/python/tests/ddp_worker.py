"""The per-rank body of the DDP logging test (test_torch_training.py), in a module of its
own so that torch.multiprocessing.spawn's children can import it without the test file.

Each rank trains a DDP-wrapped TinyHead (gloo, CPU) for 3 steps on its own batch, runs one
validation forward under torch.no_grad(), and writes its training losses to out_dir."""

import json
import os

import numpy as np
import torch
import torch.distributed as dist

import make_golden as mg
import yolo_reference as ref

C = 3
CH = 3 * (5 + C)
ANCHORS = ref.TINY_ANCHORS * 64 / 416


def run(rank, world, init_file, criterion, out_dir):
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank,
                            world_size=world)
    try:
        torch.manual_seed(0)
        net = torch.nn.Conv2d(6, CH, 1)
        model = torch.nn.parallel.DistributedDataParallel(net)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        rng = np.random.default_rng(100 + rank)
        x = torch.from_numpy(rng.normal(0, 1, (2, 6, 4, 4))).float()
        boxes = mg.random_boxes(rng, 2, 3, (64, 64), ANCHORS, C)
        losses = []
        for _ in range(3):
            out = model(x)
            heads = [torch.nn.functional.avg_pool2d(out, 2), out]
            loss = criterion(heads, boxes=boxes)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        with torch.no_grad():
            out = model(x)
            criterion([torch.nn.functional.avg_pool2d(out, 2), out], boxes=boxes)
        with open(os.path.join(out_dir, "rank%d.json" % rank), "w") as f:
            json.dump({"losses": losses, "step": criterion.step}, f)
    finally:
        dist.destroy_process_group()
