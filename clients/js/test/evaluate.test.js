// YoloLossClient.evaluate (the evaluation models) against the project's numpy port of
// pycocotools (tests/reference/coco_reference.py, run through Debian's python3 on the
// random sets of tests/python/test_eval_vs_reference.py): the float64 arrays must be the
// same bits; a bad input is a YoloLossError 400 naming tensor and index.
//
//   YL_DAEMON=build/yololossd node --test clients/js/test/evaluate.test.js

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { YoloLossClient, YoloLossError } from "../yololoss.js";
import { startDaemon, stopDaemon } from "../test-support/daemon.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
let d;
before(async () => { d = await startDaemon("--threads", "2"); });
after(async () => { await stopDaemon(d); });

// A random set and the reference's arrays as hex bytes (JSON would round nothing, but
// the bytes say "bit for bit" plainly).
function reference(seed, cfg) {
  const py = `
import sys, json
sys.path[:0] = [${JSON.stringify(join(ROOT, "tests", "python"))}, ${JSON.stringify(join(ROOT, "tests", "reference"))}]
from test_eval_vs_reference import random_set, reference
gt, dets = random_set(${seed})
import numpy as np
cfg = json.loads(${JSON.stringify(JSON.stringify(cfg))})
if "iouThrs" in cfg:  # pycocotools' thresholds are an array (a list makes AP50/AP75 -1)
    cfg["iouThrs"] = np.array(cfg["iouThrs"])
ev, stats = reference(json.loads(json.dumps(gt)), json.loads(json.dumps(dets)), dict(cfg))
out = {k: ev.eval[k].astype("<f8").tobytes().hex() for k in ("precision", "recall", "scores")}
out["stats"] = stats.astype("<f8").tobytes().hex()
print(json.dumps({"gt": gt, "dets": dets, "want": out}))
`;
  return JSON.parse(execFileSync("/usr/bin/python3", ["-c", py], { maxBuffer: 1 << 28 }));
}

const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("hex");

test("evaluate equals the numpy port of pycocotools bit for bit", async () => {
  const c = new YoloLossClient(d.url);
  for (const [seed, cfg] of [[2000, {}], [2001, { maxDets: [1, 3, 5] }], [2002, { useCats: 0 }],
                              [2003, { iouThrs: [0.3, 0.5, 0.7] }]]) {
    const { gt, dets, want } = reference(seed, cfg);
    const got = await c.evaluate(gt, dets, { params: cfg });
    for (const k of ["precision", "recall", "scores"]) {
      assert.equal(hex(got[k].data), want[k], `${k} (seed ${seed})`);
    }
    assert.equal(hex(Float64Array.from(got.stats)), want.stats, `stats (seed ${seed})`);
    assert.deepEqual(got.counts, got.precision.shape);
  }
});

test("a bad input is a 400 naming tensor and index", async () => {
  const c = new YoloLossClient(d.url);
  const { gt, dets } = reference(2004, {});
  dets[2].score = 1.5;
  await assert.rejects(c.evaluate(gt, dets), (e) => e instanceof YoloLossError &&
    e.status === 400 && e.message.includes("dt_score[2]"));
  dets[2].score = 0.5;
  const voc = await c.evaluate(gt, dets, { model: "voc07" });
  assert.deepEqual(voc.ap.shape, [1, gt.categories.length]);
});
