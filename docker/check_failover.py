#!/usr/bin/env python3
"""A training loop through the front end, as a trainer runs one, while replicas are killed
and restarted under it (make docker-compose-test).

    check_failover.py URL --run NAME --stop FILE [--seed S] [--timeout T]

Sends one small batch per step (step 0, 1, 2, ...), logged to run NAME, with the Python
client's default retry policy inside a T-second deadline per call, each answer checked
against the numpy reference (tests/reference). It stops after the step during which FILE
appeared, then reads the run's history back through URL. An exception is what the training
loop would have seen: it is recorded and the loop goes on, so that the whole story is told.
Prints what the client saw: one line per step that needed retries (how many, how long it
took), one per exception, then one JSON line:
  {"steps": n, "errors": e, "retried_steps": r, "retries": total, "max_s": slowest step,
   "history": points recorded, "distinct": distinct steps, "missing": [...], "extra": [...]}
Exit status 0 when there was no exception, every answer matched and the history holds
exactly the steps 0..n-1, each once.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check_service as cs  # noqa: E402  (also puts the client and the reference on the path)
import make_golden as mg  # noqa: E402
from yololoss import YoloLossClient, YoloLossError  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--run", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--seed", type=int, default=9700)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    cs.wait_ready(a.url, 30)

    case = mg.random_case(a.seed)
    model = "yolov3" if case["L"] == 3 else "yolov3-tiny"
    outs, kw = cs.case_args(case)

    def say(msg):
        print("check_failover: " + msg, flush=True)

    step = errors = retried = 0
    slowest = 0.0
    with YoloLossClient(a.url, model=model, timeout=a.timeout) as c:
        while True:
            stop = os.path.exists(a.stop)
            before, t0 = c.retries, time.monotonic()
            try:
                res = c.compute(outs, grads=True, run=a.run, step=step, **kw)
                cs.check(res, case["expect"], case["L"], True)
            except (YoloLossError, AssertionError, OSError) as e:
                errors += 1
                say("step %d: %s: %s" % (step, type(e).__name__, e))
            dt = time.monotonic() - t0
            slowest = max(slowest, dt)
            if c.retries > before:
                retried += 1
                say("step %d: %d retr%s, answered after %.2f s"
                    % (step, c.retries - before, "y" if c.retries - before == 1 else "ies", dt))
            step += 1
            if stop:
                break
        retries = c.retries
        points = c.steps(a.run)
    got = [int(p["step"]) for p in points]
    want = set(range(step))
    summary = {"steps": step, "errors": errors, "retried_steps": retried, "retries": retries,
               "max_s": round(slowest, 2), "history": len(got), "distinct": len(set(got)),
               "missing": sorted(want - set(got))[:20], "extra": sorted(set(got) - want)[:20]}
    print(json.dumps(summary), flush=True)
    ok = (errors == 0 and len(got) == step and set(got) == want)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
