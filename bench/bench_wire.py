"""bench_wire.py: the wire through the Python client (clients/python), dense vs compact
tensors vs shared memory, over loopback and over links limited to 10 and 1 Gbit, beside the
core in-process timed right before each request. One JSON line per configuration, then one
summary line per link; no thresholds, the numbers speak.

    python3 bench/bench_wire.py [--daemon build/yololossd] [--helper build/bench_wire]
                                [--threads N] [--requests 8] [--links 10gbit,1gbit]

The workload is bench_wire.c's (B = 16, 416x416, C = 80, 8 boxes per image, N(0, 1) logits,
fp32): `build/bench_wire --inprocess-helper DIR` writes its tensors and then times the core
in-process on request, so both sides use the same batch and thread count. Modes, each loss
only and loss + gradient, all through YoloLossClient.compute():
    dense    compact=False, shm="wire"   binary tensors both ways
    compact  compact=True,  shm="wire"   the client chooses the rows, slices and gathers
    shm      compact=False, shm="shm"    the client copies the tensors into its registered
                                         region; the gradients come back through it
    shm_compact  compact=True, shm="shm"
Bytes each way are the daemon's own count (its access log's in= and out=). Every mode's
loss, terms and gradient (Result.grads: dense, the compact one scattered back by the
client) are compared with the dense mode's, bit for bit ("identical").

Links: loopback; for each of --links, when run as root, the benchmark re-runs itself in a
private network namespace (`unshare -n`) whose loopback `tc ... tbf` limits to that rate,
with its own daemon: daemon, client and helper all inside.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

from yololoss import YoloLossClient  # noqa: E402

MODES = [("dense", False, "wire"), ("compact", True, "wire"), ("shm", False, "shm"),
         ("shm_compact", True, "shm")]


class Helper:
    """build/bench_wire --inprocess-helper: the workload, and the core timed in-process."""

    def __init__(self, path, threads, workdir):
        self.p = subprocess.Popen([path, "--inprocess-helper", workdir, "--threads",
                                   str(threads)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError("bench_wire --inprocess-helper did not start")
        T = int(line[1])
        B, size, C = 16, 416, 80
        self.outputs = [np.fromfile(os.path.join(workdir, "out_%d.f32" % l), np.float32)
                        .reshape(B, (size // 32) << l, (size // 32) << l, 3 * (5 + C))
                        for l in range(3)]
        self.boxes = np.fromfile(os.path.join(workdir, "boxes.f32"), np.float32).reshape(B, T, 5)

    def ms(self, grads):
        self.p.stdin.write("1\n" if grads else "0\n")
        self.p.stdin.flush()
        return float(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def start_daemon(path, threads, logdir):
    err = open(os.path.join(logdir, "daemon.err"), "w+")
    out = open(os.path.join(logdir, "daemon.out"), "w+")
    proc = subprocess.Popen([path, "--host", "127.0.0.1", "--port", "0", "--threads",
                             str(threads), "--history", "none"], stdout=out, stderr=err)
    while True:
        err.seek(0)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", err.read())
        if m:
            return proc, int(m.group(1)), out
        if proc.poll() is not None:
            err.seek(0)
            raise RuntimeError("yololossd did not start: " + err.read())
        time.sleep(0.01)


def last_infer_bytes(out):
    """in= and out= of the daemon's last infer line (its access log)."""
    out.flush()
    out.seek(0)
    lines = [l for l in out.read().splitlines() if "/infer" in l]
    m = re.search(r" in=(\d+) out=(\d+)", lines[-1]) if lines else None
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def same(a, b):
    if a.loss != b.loss or a.terms != b.terms:
        return False
    if (a.grads is None) != (b.grads is None):
        return False
    return a.grads is None or all(np.array_equal(x.view(np.uint32), y.view(np.uint32))
                                  for x, y in zip(a.grads, b.grads))


def run_link(link, args):
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_wire_py_") as tmp:
        helper = Helper(args.helper, args.threads, tmp)
        proc, port, daemon_out = start_daemon(args.daemon, args.threads, tmp)
        client = YoloLossClient("http://127.0.0.1:%d" % port, model="yolov3")
        try:
            for grads in (False, True):
                reference = None
                for name, compact, shm in MODES:
                    n = args.requests if name == "dense" else min(60, 3 * args.requests)
                    if name == "dense" and link == "1gbit":
                        n = min(n, 3)
                    lat, base, ratio = [], [], []
                    for i in range(n + 1):          # the first is a warm-up
                        t_in = helper.ms(grads)
                        t0 = time.perf_counter()
                        r = client.compute(helper.outputs, boxes=helper.boxes, grads=grads,
                                           compact=compact, shm=shm)
                        t = (time.perf_counter() - t0) * 1e3
                        if i:
                            lat.append(t)
                            base.append(t_in)
                            ratio.append(t / t_in)
                    req_b, resp_b = last_infer_bytes(daemon_out)
                    if reference is None:
                        reference = r
                    rec = {"bench": "wire", "client": "python", "link": link, "mode": name,
                           "gradient": grads, "threads": args.threads, "batch": 16,
                           "size": 416, "classes": 80, "requests": n,
                           "p50_ms": round(float(np.median(lat)), 3),
                           "min_ms": round(min(lat), 3),
                           "request_bytes": req_b, "response_bytes": resp_b,
                           "inprocess_ms": round(float(np.median(base)), 3),
                           "x_inprocess": round(float(np.median(ratio)), 2),
                           "loss": r.loss, "identical_to_dense": same(r, reference)}
                    results[(name, grads)] = rec
                    print(json.dumps(rec), flush=True)
        finally:
            client.close()
            proc.terminate()
            proc.wait()
            helper.close()

    def frac(name, g):
        a, d = results[(name, g)], results[("dense", g)]
        if None in (a["request_bytes"], d["request_bytes"]):
            return None
        return round((a["request_bytes"] + a["response_bytes"]) /
                     (d["request_bytes"] + d["response_bytes"]), 4)

    d1, c1 = results[("dense", True)], results[("compact", True)]
    print(json.dumps({
        "bench": "wire_summary", "client": "python", "link": link, "threads": args.threads,
        "compact_speedup_loss_grad": round(d1["p50_ms"] / c1["p50_ms"], 2),
        "compact_speedup_loss": round(results[("dense", False)]["p50_ms"] /
                                      results[("compact", False)]["p50_ms"], 2),
        "compact_bytes_fraction_loss_grad": frac("compact", True),
        "compact_bytes_fraction_loss": frac("compact", False),
        "shm_loss_grad_x_inprocess": results[("shm", True)]["x_inprocess"],
        "shm_compact_loss_grad_x_inprocess": results[("shm_compact", True)]["x_inprocess"],
        "shm_loss_x_inprocess": results[("shm", False)]["x_inprocess"],
        "all_identical": all(r["identical_to_dense"] for r in results.values())}),
        flush=True)


def limit_loopback(rate):
    bits = float(re.match(r"[\d.]+", rate).group(0)) * (1e9 if "gbit" in rate else
                                                         1e6 if "mbit" in rate else 1)
    burst = max(int(bits / 8 * 0.004), 512 * 1024)
    subprocess.run("ip link set lo up && tc qdisc add dev lo root tbf rate %s burst %d "
                   "latency 200ms" % (rate, burst), shell=True, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", default=os.path.join(ROOT, "build", "yololossd"))
    ap.add_argument("--helper", default=os.path.join(ROOT, "build", "bench_wire"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--links", default="10gbit,1gbit")
    ap.add_argument("--inside", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        limit_loopback(args.inside)
        run_link(args.inside, args)
        return
    run_link("loopback", args)
    for rate in [r for r in args.links.split(",") if r and r != "none"]:
        if os.geteuid() != 0:
            print(json.dumps({"bench": "wire", "client": "python", "link": rate,
                              "skipped": "needs root (unshare -n, tc)"}), flush=True)
            continue
        rc = subprocess.call(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                              "--inside", rate, "--daemon", args.daemon, "--helper",
                              args.helper, "--threads", str(args.threads), "--requests",
                              str(args.requests)])
        if rc:
            print(json.dumps({"bench": "wire", "client": "python", "link": rate,
                              "skipped": "the namespace run failed (%d)" % rc}), flush=True)


if __name__ == "__main__":
    main()
