// compact.js without a daemon, against the project's numpy reference (make_cases.py):
// the rows chosen cover every anchor keras assigns a truth to (boxes), or are exactly the
// anchors of nonzero objectness (y_true); the reference's dense gradient is zero outside
// those rows but for the objectness channel, so scattering its compact parts rebuilds it
// exactly.
//
//   node --test clients/js/test/compact.test.js

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { gatherCompact, planCompact, scatterCompact } from "../compact.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.PYTHON ?? "/usr/bin/python3";
const ARRAY = { FP32: Float32Array, FP64: Float64Array, FP16: Uint16Array, BF16: Uint16Array };
const tensor = (t, name) => ({ name, data: ARRAY[t.dtype].from(t.data), shape: t.shape, dtype: t.dtype });

const seeds = Array.from({ length: 24 }, (_, i) => 9200 + i);
const cases = JSON.parse(execFileSync(PYTHON, [join(HERE, "make_cases.py"), ...seeds.map(String)],
  { maxBuffer: 1 << 28 }));

test("boxes: the rows cover every truth anchor of the reference's preprocess_true_boxes", () => {
  let checked = 0;
  for (const c of cases.filter((x) => x.boxes)) {
    const outs = c.outputs.map((t, l) => tensor(t, `output_${l}`));
    const plan = planCompact(outs, tensor(c.boxes, "boxes"), null);
    assert.ok(plan, `seed ${c.seed}: planned`);
    c.truth.forEach((idx, l) => {
      const rows = new Set(plan.layers[l].rows);
      for (const a of idx) {
        assert.ok(rows.has(a), `seed ${c.seed} layer ${l}: truth anchor ${a} has no row`);
        checked++;
      }
      assert.ok(plan.layers[l].rows.length <= 3 * c.boxes.shape[0] * c.boxes.shape[1],
        "at most one cell (3 anchors) per box and layer");
    });
  }
  assert.ok(checked > 20, `only ${checked} truth anchors checked`);
});

test("y_true: the rows are the anchors of nonzero objectness, in order", () => {
  let n = 0;
  for (const c of cases.filter((x) => x.y_true)) {
    const outs = c.outputs.map((t, l) => tensor(t, `output_${l}`));
    const yt = c.y_true.map((t, l) => tensor(t, `y_true_${l}`));
    const plan = planCompact(outs, null, yt);
    plan.layers.forEach((p, l) => {
      const t = c.y_true[l];
      const R = t.shape.length === 4 ? t.shape[3] / 3 : t.shape[4];
      const want = [];
      for (let a = 0; a < p.anchors; a++) {
        const v = t.data[a * R + 4];
        if (t.dtype === "FP16" || t.dtype === "BF16" ? (v & 0x7fff) !== 0 : v !== 0) want.push(a);
      }
      assert.deepEqual(p.rows, want, `seed ${c.seed} layer ${l}`);
      assert.deepEqual(Array.from(p.index, Number), want);
      n++;
    });
  }
  assert.ok(n > 0);
});

test("box and rows are the dense values; scattering the reference's compact gradient rebuilds it", () => {
  for (const c of cases) {
    const outs = c.outputs.map((t, l) => tensor(t, `output_${l}`));
    const plan = c.boxes ? planCompact(outs, tensor(c.boxes, "boxes"), null)
      : planCompact(outs, null, c.y_true.map((t, l) => tensor(t, `y_true_${l}`)));
    plan.layers.forEach((p, l) => {
      const { box, rows } = gatherCompact(p);
      const src = outs[l].data, R = p.row;
      assert.equal(box.constructor, src.constructor);
      for (let a = 0; a < p.anchors; a++) {
        for (let k = 0; k < 5; k++) assert.ok(Object.is(box[a * 5 + k], src[a * R + k]));
      }
      p.rows.forEach((a, r) => {
        for (let k = 0; k < R; k++) assert.ok(Object.is(rows[r * R + k], src[a * R + k]));
      });
      const g = Float64Array.from(c.expect.grads[l]);
      const obj = Float64Array.from({ length: p.anchors }, (_, a) => g[a * R + 4]);
      const grows = new Float64Array(p.rows.length * R);
      p.rows.forEach((a, r) => grows.set(g.subarray(a * R, (a + 1) * R), r * R));
      const dense = scatterCompact(p, obj, grows);
      for (let i = 0; i < g.length; i++) {
        if (dense[i] !== g[i]) assert.fail(`seed ${c.seed} layer ${l} [${i}]: ${dense[i]} != ${g[i]}`);
      }
    });
  }
});

test("shapes the client cannot read as a batch are left to the daemon (dense)", () => {
  const t = (shape, name = "output_0") => ({ name, dtype: "FP32", shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  assert.equal(planCompact([t([1, 2, 2, 17])], t([1, 1, 5], "boxes"), null), null);
  assert.equal(planCompact([t([1, 2, 2, 18])], t([2, 1, 5], "boxes"), null), null);
  assert.equal(planCompact([t([1, 2, 2, 18])], null, [t([1, 2, 1, 18])]), null);
});

test("y_true: objectness (channel 4) decides, not the box channels", () => {
  const out = { name: "output_0", dtype: "FP32", shape: [1, 2, 2, 18], data: new Float32Array(72) };
  const y = new Float32Array(72); // 12 anchors of 6 channels
  y[5 * 6 + 4] = 0.5;            // anchor 5: objectness, no box
  y[7 * 6 + 3] = 0.25;           // anchor 7: a box channel, no objectness
  const yb = new Uint16Array(72);
  yb[2 * 6 + 4] = 0x8000;        // -0: zero
  yb[9 * 6 + 4] = 0x0001;        // the smallest subnormal: nonzero
  assert.deepEqual(planCompact([out], null, [{ name: "y_true_0", dtype: "FP32", shape: [1, 2, 2, 18], data: y }]).layers[0].rows, [5]);
  assert.deepEqual(planCompact([out], null, [{ name: "y_true_0", dtype: "FP16", shape: [1, 2, 2, 3, 6], data: yb }]).layers[0].rows, [9]);
});
