#!/usr/bin/python3
"""Train a small YOLOv3-tiny-style detector from scratch with the loss computed by yololossd.

    make build/yololossd && /usr/bin/python3 examples/train_yolo.py

One command, CPU is enough: it generates a synthetic detection set (coloured shapes on
noise, 3 classes, boxes known; fixed seed), starts build/yololossd on a free port (or uses
--url), trains with yololoss.torch.RemoteYoloLoss, AMP where the device has it (float16
autocast + GradScaler on CUDA; --amp bf16 for bfloat16 autocast on CPU) and an EMA of the
weights, then measures mAP@0.5 of the EMA model on held-out images (decode + torchvision
NMS) against the same network before training.

--loss reference trains with the project's numpy reference loss in-process instead;
--check-reference K computes both on the first K steps' heads and stops with an error
unless they agree (loss and per-image terms to a relative 1e-5, gradients to 1e-6).

--corrupt 0.05 damages the labels of a known 5% of the training images (boxes shifted or
classes swapped), keeps every image's loss by image id, and reports how many of the
corrupted images the top 5% of the loss ranking recovers (precision and recall).

--json PATH writes every figure (per-step losses, mAPs, ranking) for tests and notes.
"""

import argparse
import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

from detection_map import mean_average_precision  # noqa: E402
from label_errors import LossLedger, corrupt, precision_recall_at  # noqa: E402
from shapes import CLASSES, augment, make_dataset, pad_boxes  # noqa: E402
from tinyyolo import ANCHORS, TinyYolo, detect  # noqa: E402
from yololoss import YoloLossClient, YoloLossError  # noqa: E402
from yololoss.torch import RemoteYoloLoss  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--url", help="a running yololossd (default: start build/yololossd)")
    p.add_argument("--daemon", default=os.path.join(ROOT, "build", "yololossd"),
                   help="the daemon to start when no --url is given")
    p.add_argument("--loss", choices=("remote", "reference"), default="remote")
    p.add_argument("--check-reference", type=int, default=0, metavar="K",
                   help="compare the service with the reference on the first K steps")
    p.add_argument("--train", type=int, default=1000, help="training images")
    p.add_argument("--val", type=int, default=200, help="held-out images")
    p.add_argument("--size", type=int, default=128, help="image side (a multiple of 32)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: none)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=8, help="channels of the first conv")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="train on the images as generated (no flips, turns, colour order)")
    p.add_argument("--ema", type=float, default=0.995, help="EMA decay (0: no EMA)")
    p.add_argument("--amp", choices=("auto", "off", "bf16"), default="auto",
                   help="auto: float16 autocast + GradScaler on CUDA, off on CPU")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: all cores). The network is small, and one "
                   "thread avoids OpenMP spinning on cores shared with the daemon")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corrupt", type=float, default=0.0, metavar="FRACTION",
                   help="share of training images whose labels are damaged")
    p.add_argument("--rank-last", type=int, default=5, metavar="K",
                   help="ranking: mean relative loss over an image's last K appearances")
    p.add_argument("--run", help="run name for the daemon's monitoring (default: none)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


class Daemon:
    """build/yololossd on 127.0.0.1, a free port, its history in a temporary directory."""

    def __init__(self, path):
        if not os.access(path, os.X_OK):
            sys.exit("%s is not built: run `make build/yololossd`, or give --url" % path)
        self.dir = tempfile.TemporaryDirectory(prefix="train_yolo.")
        self.log = open(os.path.join(self.dir.name, "stderr"), "w+")
        self.proc = subprocess.Popen(
            [path, "--host", "127.0.0.1", "--port", "0", "--threads", "1",
             "--history", os.path.join(self.dir.name, "history.sqlite")],
            stdout=subprocess.DEVNULL, stderr=self.log, cwd=self.dir.name)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(self.log.name) as f:
                m = re.search(r"listening on (http://\S+)", f.read())
            if m:
                self.url = m.group(1)
                return
            time.sleep(0.05)
        self.stop()
        sys.exit("yololossd did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.dir.cleanup()


class ModelEMA:
    """Exponential moving average of the weights (and BatchNorm buffers), with yolov5's
    warm-up: decay * (1 - exp(-updates / 200)), so early averages follow the model."""

    def __init__(self, model, decay):
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        self.updates = 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 200))
        for e, m in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(m.detach(), alpha=1 - d)
            else:
                e.copy_(m)


def to_input(images, device):
    return torch.from_numpy(images).to(device).float().div_(255.0)


@torch.no_grad()
def evaluate_map(model, images, boxes, device, batch=50):
    was = model.training
    model.eval()
    dets = []
    for i in range(0, len(images), batch):
        heads = model(to_input(images[i:i + batch], device))
        dets += detect([h.float().cpu() for h in heads])
    model.train(was)
    return mean_average_precision(dets, boxes, len(CLASSES))


def compare_with_reference(heads, boxes, remote, reference_loss):
    """Differences between the service's answer and the reference's on the same heads."""
    reference_loss([h.detach() for h in heads], boxes)
    ref = reference_loss.last_result
    d_loss = abs(remote.loss - ref.loss) / max(1.0, abs(ref.loss))
    scale = np.maximum(1.0, np.abs(ref.image_terms))
    d_img = float(np.max(np.abs(remote.image_terms - ref.image_terms) / scale))
    d_grad = max(float(np.max(np.abs(np.asarray(g) - r))) for g, r in zip(remote.grads, ref.grads))
    return {"remote": float(remote.loss), "reference": float(ref.loss), "rel_loss": d_loss,
            "rel_image_terms": d_img, "abs_grad": d_grad}


def server_ranking(args, say, remote, corrupted, kinds):
    """The daemon's own ranking (GET /v1/runs/{run}/images?order=...), for each order."""
    k = len(corrupted)
    bad = set(corrupted.tolist())
    out = {}
    # per box (the daemon's default: each image's value per truth) for each order, and the
    # loss per image for comparison
    for order, per in (("loss", "box"), ("class", "box"), ("confidence", "box"),
                       ("loss", "image")):
        try:
            top = [r["image"] for r in remote.client.images(args.run, order=order, limit=k,
                                                           window=args.rank_last,
                                                           per=per)["images"]]
        except YoloLossError as e:      # a daemon with --history none, or an older one
            say("label errors: the daemon's ranking is not available: %s" % e)
            return out
        prec, rec = precision_recall_at(top, corrupted, k)
        hits = [i for i in top if i in bad]
        by_kind = {kind: sum(1 for i in hits if kinds[i] == kind) for kind in ("class", "shift")}
        say("label errors, the daemon's ranking (order=%s, per=%s, window %d): top %d holds "
            "%d: precision %.3f, recall %.3f; found by kind %s" % (
                order, per, args.rank_last, k, len(hits), prec, rec, by_kind))
        key = "server_" + order + ("_per_image" if per == "image" else "")
        out[key] = {"precision": prec, "recall": rec, "found_by_kind": by_kind, "top": top}
    return out


def main(argv=None):
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    if args.size % 32:
        sys.exit("--size must be a multiple of 32")
    if args.check_reference and args.loss != "remote":
        sys.exit("--check-reference compares the service with the reference: use --loss remote")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if args.amp == "auto":
        amp = torch.float16 if device.type == "cuda" else None
    else:
        amp = torch.bfloat16 if args.amp == "bf16" else None

    t0 = time.monotonic()
    images, boxes = make_dataset(args.train + args.val, args.size, seed=args.seed)
    tr_img, va_img = images[:args.train], images[args.train:]
    tr_box, va_box = boxes[:args.train], boxes[args.train:]
    corrupted, kinds = np.zeros(0, int), {}
    if args.corrupt > 0:
        tr_box, corrupted, kinds = corrupt(tr_box, args.corrupt, args.size, len(CLASSES),
                                           seed=args.seed + 1)
    say("data: %d training images (%d with damaged labels), %d held out, %dx%d, %d classes"
        " (%.1f s)" % (args.train, len(corrupted), args.val, args.size, args.size,
                       len(CLASSES), time.monotonic() - t0))

    daemon = None
    reference = None
    if args.loss == "reference" or args.check_reference:
        from reference_loss import ReferenceYoloLoss
        reference = ReferenceYoloLoss(ANCHORS, layout="NCHW")
    criterion = reference
    try:
        if args.loss == "remote":
            url = args.url
            if not url:
                daemon = Daemon(args.daemon)
                url = daemon.url
            if args.run is None and daemon:
                args.run = "train_yolo"     # our own daemon: log, its history is temporary
            criterion = RemoteYoloLoss(YoloLossClient(url, model="yolov3-tiny"), layout="NCHW",
                                       anchors=np.array(ANCHORS).ravel(), run=args.run)
            criterion.set_config({k: v for k, v in vars(args).items() if v is not None})
            say("loss: yololossd at %s (model yolov3-tiny, anchors %s)" % (url, ANCHORS))
        return train(args, say, device, amp, criterion, reference, tr_img, tr_box, va_img,
                     va_box, corrupted, kinds)
    finally:
        if daemon:
            daemon.stop()


def train(args, say, device, amp, criterion, reference, tr_img, tr_box, va_img, va_box,
          corrupted, kinds):
    model = TinyYolo(len(CLASSES), width=args.width).to(device)
    fresh_map, _ = evaluate_map(model, va_img, va_box, device)
    say("held-out mAP@0.5 of the fresh network: %.4f" % fresh_map)
    ema = ModelEMA(model, args.ema) if args.ema > 0 else None

    steps_per_epoch = len(tr_img) // args.batch
    total = args.epochs * steps_per_epoch
    if args.steps:
        total = min(total, args.steps)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    warm = min(100, max(1, total // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * (
        0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
    scaler = torch.cuda.amp.GradScaler(enabled=(amp == torch.float16))
    ledger = LossLedger(args.rank_last)
    ledger_per_image = LossLedger(args.rank_last, per_box=False)   # the daemon's per=image
    rng = np.random.default_rng(args.seed + 2)
    log = {"steps": [], "check": []}
    step, t0 = 0, time.monotonic()
    while step < total:
        order = rng.permutation(len(tr_img))
        for s in range(steps_per_epoch):
            if step >= total:
                break
            ids = order[s * args.batch:(s + 1) * args.batch]
            batch_img, batch_box = tr_img[ids], [tr_box[i] for i in ids]
            if args.augment:
                batch_img, batch_box = augment(batch_img, batch_box, rng)
            x = to_input(batch_img, device)
            bx = pad_boxes(batch_box)
            if amp is not None:
                with torch.autocast(device.type, dtype=amp):
                    heads = model(x)
            else:
                heads = model(x)
            heads = [h.float() for h in heads]       # the loss in float32, as AMP trainers do
            if criterion is reference:
                loss = criterion(heads, boxes=bx)
            else:     # the ids let the daemon rank images by loss (with --run)
                loss = criterion(heads, boxes=bx, image_ids=torch.from_numpy(ids))
            res = criterion.last_result
            if step < args.check_reference:
                c = compare_with_reference(heads, bx, res, reference)
                c["step"] = step
                log["check"].append(c)
                say("step %d: service %.9g reference %.9g (rel %.2g, per image %.2g, "
                    "grad %.2g)" % (step, c["remote"], c["reference"], c["rel_loss"],
                                    c["rel_image_terms"], c["abs_grad"]))
                if c["rel_loss"] > 1e-5 or c["rel_image_terms"] > 1e-5 or c["abs_grad"] > 1e-6:
                    raise SystemExit("the service and the reference disagree at step %d: %s"
                                     % (step, c))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema:
                ema.update(model)
            ledger.add(step, ids, res.image_terms, [len(b) for b in batch_box])
            ledger_per_image.add(step, ids, res.image_terms, [len(b) for b in batch_box])
            log["steps"].append(float(loss.item()))
            step += 1
            if step % 50 == 0 and criterion is not reference:
                criterion.log_scalars(lr=sched.get_last_lr()[0])
            if step % 50 == 0 or step == total:
                say("step %d/%d  loss %.4f (mean of the last 50)  %.1f s" % (
                    step, total, float(np.mean(log["steps"][-50:])), time.monotonic() - t0))

    eval_model = ema.model if ema else model
    final_map, aps = evaluate_map(eval_model, va_img, va_box, device)
    n = min(50, max(1, len(log["steps"]) // 5))
    first, last = float(np.mean(log["steps"][:n])), float(np.mean(log["steps"][-n:]))
    say("loss: mean of the first %d steps %.4f, of the last %d steps %.4f" % (n, first, n, last))
    say("held-out mAP@0.5: fresh network %.4f, after %d steps (%s) %.4f; AP per class %s" % (
        fresh_map, step, "EMA" if ema else "model", final_map,
        {c: round(a, 4) for c, a in zip(CLASSES, aps) if a is not None}))
    out = {"args": vars(args), "steps_run": step, "train_seconds": time.monotonic() - t0,
           "loss_first": first, "loss_last": last, "loss_window": n,
           "map_fresh": fresh_map, "map_final": final_map, "ap_per_class": aps,
           "losses": log["steps"], "check": log["check"]}

    if criterion is not reference:
        criterion.log_scalars(val_map50=final_map, step=step - 1)
    if len(corrupted):
        ranking = ledger.ranking()
        k = len(corrupted)
        prec, rec = precision_recall_at(ranking, corrupted, k)
        hits = [int(i) for i in ranking[:k] if int(i) in set(corrupted.tolist())]
        by_kind = {kind: sum(1 for i in hits if kinds[i] == kind) for kind in ("class", "shift")}
        say("label errors: %d of %d training images damaged; the top %d of the loss ranking "
            "holds %d of them: precision %.3f, recall %.3f (random: %.3f); found by kind %s "
            "of %s" % (k, len(tr_img), k, len(hits), prec, rec, k / len(tr_img), by_kind,
                       {kind: sum(1 for v in kinds.values() if v == kind)
                        for kind in ("class", "shift")}))
        if criterion is not reference and args.run:
            out.update(server_ranking(args, say, criterion, corrupted, kinds))
        out["client_per_image_top"] = ledger_per_image.ranking()[:k]
        out.update({"corrupted": corrupted.tolist(), "ranking_top": [int(i) for i in ranking[:k]],
                    "precision": prec, "recall": rec, "found_by_kind": by_kind})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
