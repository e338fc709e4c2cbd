"""bench_client_python: what the Python client's transports cost on the standard workload,
dense vs compact tensors, socket vs shared memory, for YoloLossClient.compute and for a
RemoteYoloLoss forward + backward, all measured in the same run against one daemon.

    python3 bench/bench_client_python.py [--daemon build/yololossd] [--threads 2]
                                         [--rounds 7] [--batch 16] [--classes 80]

Standard workload (bench_wire's): B = 16, 416x416 (grids 13, 26, 52), 80 classes, 8 boxes
per image, fp32 logits from N(0, 1) with a fixed seed. The modes run in alternating rounds
(one call of each mode per round, after one warm-up call each) so that drift of a shared
machine falls on all of them alike; the median of the rounds is reported. One JSON line per
configuration, then a summary line; no thresholds.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

from yololoss import YoloLossClient  # noqa: E402

ANCHORS = np.array([10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198,
                    373, 326], np.float64).reshape(9, 2)


def start_daemon(path, threads):
    p = subprocess.Popen([path, "--host", "127.0.0.1", "--port", "0", "--threads",
                          str(threads), "--history", "none"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return p, m.group(1)
    p.kill()
    raise SystemExit("bench_client_python: %s did not start" % path)


def workload(B, C, seed=1):
    rng = np.random.default_rng(seed)
    outs = [rng.normal(0, 1, (B, s, s, 3 * (5 + C))).astype(np.float32) for s in (13, 26, 52)]
    boxes = np.zeros((B, 8, 5), np.float32)
    for b in range(B):
        for t in range(8):
            w, h = rng.uniform(16, 200, 2)
            x, y = rng.uniform(w / 2, 416 - w / 2), rng.uniform(h / 2, 416 - h / 2)
            boxes[b, t] = [x - w / 2, y - h / 2, x + w / 2, y + h / 2, rng.integers(C)]
    return outs, boxes


def request_bytes(client, outs, boxes, grads, compact, shm):
    """Bytes of the request body and of the answer, as sent (one extra call, spied)."""
    sizes = []
    real = client._request

    def spy(method, path, body=(), headers=None, timeout=None, **kw):
        status, rh, data = real(method, path, body, headers, timeout, **kw)
        if path.endswith("/infer"):
            sizes.append((sum(memoryview(c).nbytes for c in body), len(data)))
        return status, rh, data
    client._request = spy
    try:
        client.compute(outs, boxes=boxes, grads=grads, compact=compact, shm=shm)
    finally:
        del client._request
    return sizes[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", default=os.path.join(ROOT, "build", "yololossd"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--classes", type=int, default=80)
    a = ap.parse_args()
    proc, url = start_daemon(a.daemon, a.threads)
    try:
        outs, boxes = workload(a.batch, a.classes)
        client = YoloLossClient(url, model="yolov3")
        ext = sorted(client.server_extensions())
        modes = [(c, s) for c in (False, True) for s in ("wire", "shm")]
        results = {}
        for grads in (False, True):
            for m in modes:                                  # warm-up: connections, regions
                client.compute(outs, boxes=boxes, grads=grads, compact=m[0], shm=m[1])
            times = {m: [] for m in modes}
            for _ in range(a.rounds):
                for m in modes:
                    t0 = time.perf_counter()
                    r = client.compute(outs, boxes=boxes, grads=grads, compact=m[0], shm=m[1])
                    if grads:
                        r.grads                              # the dense gradient, rebuilt
                    times[m].append(time.perf_counter() - t0)
            for m in modes:
                sent, got = request_bytes(client, outs, boxes, grads, m[0], m[1])
                ms = statistics.median(times[m]) * 1e3
                results["client", grads, m] = ms
                print(json.dumps({"bench": "client_python", "api": "YoloLossClient.compute",
                                  "grads": grads, "compact": m[0], "transport": m[1],
                                  "batch": a.batch, "classes": a.classes,
                                  "median_ms": round(ms, 3),
                                  "min_ms": round(min(times[m]) * 1e3, 3),
                                  "request_bytes": sent, "response_bytes": got,
                                  "rounds": a.rounds}), flush=True)
        try:
            import torch
            from yololoss.torch import RemoteYoloLoss
        except ImportError:
            torch = None
            print(json.dumps({"bench": "client_python", "api": "RemoteYoloLoss",
                              "skipped": "torch is not installed"}), flush=True)
        if torch is not None:
            torch.set_num_threads(1)
            heads = [torch.from_numpy(o).permute(0, 3, 1, 2).contiguous() for o in outs]
            crits = {m: RemoteYoloLoss(YoloLossClient(url, model="yolov3", shm=m[1]),
                                       layout="NCHW", compact=m[0]) for m in modes}

            def step(m):
                hs = [h.detach().requires_grad_() for h in heads]
                crits[m](hs, boxes=boxes).backward()
            for m in modes:
                step(m)
            times = {m: [] for m in modes}
            for _ in range(a.rounds):
                for m in modes:
                    t0 = time.perf_counter()
                    step(m)
                    times[m].append(time.perf_counter() - t0)
            for m in modes:
                ms = statistics.median(times[m]) * 1e3
                results["torch", True, m] = ms
                print(json.dumps({"bench": "client_python",
                                  "api": "RemoteYoloLoss forward+backward (CPU, NCHW fp32)",
                                  "compact": m[0], "transport": m[1], "batch": a.batch,
                                  "classes": a.classes, "median_ms": round(ms, 3),
                                  "min_ms": round(min(times[m]) * 1e3, 3),
                                  "rounds": a.rounds}), flush=True)
        base = results["client", True, (False, "wire")]
        print(json.dumps({"bench": "client_python", "summary": True, "server_extensions": ext,
                          "compute_grads_speedup_vs_dense_wire": {
                              "%s+%s" % ("compact" if m[0] else "dense", m[1]):
                              round(base / results["client", True, m], 2) for m in modes}}),
              flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
