// yololoss.js against a live yololossd (YL_DAEMON, default build/yololossd, started on a
// free port by test-support/daemon.js): answers equal the project's numpy reference
// (tests/reference, through make_cases.py and Debian's python3), in binary and JSON modes
// and every dtype; errors, the bearer token, metadata. The retry policy is tested in
// retry.test.js, shared memory in shm.test.js.
//
//   YL_DAEMON=build/yololossd node --test clients/js/test/

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { YoloLossClient, YoloLossError, STAT_NAMES, TERM_NAMES, toBF16 } from "../yololoss.js";
import { args, referenceCases as casesOf, startDaemon, stopDaemon } from "../test-support/daemon.js";

let plain, guarded, tokenDir;
before(async () => {
  tokenDir = mkdtempSync(join(tmpdir(), "yl-js-"));
  writeFileSync(join(tokenDir, "token"), "js-token\n");
  [plain, guarded] = await Promise.all([startDaemon("--threads", "2"),
    startDaemon("--threads", "1", "--token-file", join(tokenDir, "token"))]);
});
after(async () => {
  await Promise.all([stopDaemon(plain), stopDaemon(guarded)]);
  rmSync(tokenDir, { recursive: true, force: true });
});

// ---- the reference --------------------------------------------------------------------

let cases = null;
function referenceCases() {
  if (cases === null) cases = casesOf([9100, 9101, 9102, 9103, 9104, 9105, 9106, 9107, 9108, 9109]);
  return cases;
}

function close(name, got, want) {
  const d = Math.abs(got - want);
  assert.ok(d <= 1e-12 || d <= 1.2e-6 * Math.abs(want), `${name}: got ${got}, want ${want}`);
}

function checkAgainst(res, e, withGrads) {
  close("loss", res.loss, e.loss);
  TERM_NAMES.forEach((n, k) => close(`terms.${n}`, res.terms[n], e.terms[k]));
  e.layer_terms.forEach((row, l) => row.forEach((v, k) => close(`layer ${l}`, res.layerTerms[l][k], v)));
  e.image_terms.forEach((row, b) => row.forEach((v, k) => close(`image ${b}`, res.imageTerms[b][k], v)));
  e.stats.forEach((row, l) => row.forEach((v, k) => {
    const name = STAT_NAMES[k];
    if (name === "count" || name === "ignored") assert.equal(res.stats[name][l], v, name);
    else close(`stats.${name}[${l}]`, res.stats[name][l], v);
  }));
  if (!withGrads) {
    assert.equal(res.grads, null);
    return;
  }
  assert.equal(res.grads.length, e.grads.length);
  e.grads.forEach((g, l) => {
    assert.ok(res.grads[l] instanceof Float32Array);
    assert.equal(res.grads[l].length, g.length);
    for (let i = 0; i < g.length; i++) {
      if (!(Math.abs(res.grads[l][i] - g[i]) <= 1e-6 + 1.2e-7 * Math.abs(g[i]))) {
        assert.fail(`grad_${l}[${i}]: got ${res.grads[l][i]}, want ${g[i]}`);
      }
    }
  });
}

// ---- results --------------------------------------------------------------------------

test("random cases equal the numpy reference (binary, gradients)", async () => {
  for (const c of referenceCases()) {
    const client = new YoloLossClient(plain.url, { model: c.model });
    const [outs, opts] = args(c);
    const res = await client.compute(outs, { ...opts, grads: true });
    assert.equal(res.modelName, c.model);
    checkAgainst(res, c.expect, true);
    res.gradShapes.forEach((s, l) => assert.deepEqual(s, c.outputs[l].shape));
  }
});

test("JSON mode gives the same bits as binary mode; loss only has no gradients", async () => {
  for (const c of referenceCases().slice(0, 5)) {
    const client = new YoloLossClient(plain.url, { model: c.model });
    const [outs, opts] = args(c);
    const a = await client.compute(outs, { ...opts, grads: true });
    const b = await client.compute(outs, { ...opts, grads: true, binary: false });
    assert.equal(a.loss, b.loss);
    assert.deepEqual(a.stats, b.stats);
    a.grads.forEach((g, l) => assert.deepEqual(g, b.grads[l]));
    const c2 = await client.compute(outs, { ...opts, binary: false });
    checkAgainst(c2, c.expect, false);
  }
});

test("BF16 from toBF16 equals FP32 of the same values; plain arrays are FP32", async () => {
  const client = new YoloLossClient(plain.url, { model: "yolov3-tiny" });
  const vals = (n, s) => Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s) * 2);
  const bits = [toBF16(vals(2 * 2 * 2 * 18, 1)), toBF16(vals(2 * 4 * 4 * 18, 2))];
  const asF32 = bits.map((b) => new Float32Array(Uint32Array.from(b, (x) => x << 16).buffer));
  const boxes = { data: [10, 12, 40, 50, 0, 0, 0, 0, 0, 0, 3, 3, 20, 60, 0, 0, 0, 0, 0, 0], shape: [2, 2, 5] };
  const shapes = [[2, 2, 2, 18], [2, 4, 4, 18]];
  const a = await client.compute(bits.map((d, l) => ({ data: d, shape: shapes[l], dtype: "BF16" })), { boxes, grads: true });
  const b = await client.compute(asF32.map((d, l) => ({ data: d, shape: shapes[l] })), { boxes, grads: true });
  const c = await client.compute(asF32.map((d, l) => ({ data: Array.from(d), shape: shapes[l] })), { boxes, grads: true, binary: false });
  for (const r of [b, c]) {
    assert.equal(r.loss, a.loss);
    a.grads.forEach((g, l) => assert.deepEqual(g, r.grads[l]));
  }
});

test("parameters: request id, run and step", async () => {
  const client = new YoloLossClient(plain.url, { model: "yolov3-tiny" });
  const outs = [{ data: new Float32Array(18), shape: [1, 1, 1, 18] },
    { data: new Float32Array(72), shape: [1, 2, 2, 18] }];
  const res = await client.compute(outs, { boxes: { data: new Float64Array(5), shape: [1, 1, 5] },
    requestId: "js-1", run: "node", step: 5, ignoreThresh: 0.7 });
  assert.equal(res.id, "js-1");
  assert.ok(Math.abs(res.loss - 10.3972073) < 1e-6);
  await assert.rejects(client.compute(outs, { boxes: { data: new Float64Array(5), shape: [1, 1, 5] }, step: 1.5 }), TypeError);
});

// ---- errors, auth, metadata -------------------------------------------------------------

test("server errors carry the status and the server's message", async () => {
  const client = new YoloLossClient(plain.url, { model: "yolov3-tiny" });
  const outs = [{ data: new Float32Array(2 * 2 * 21), shape: [1, 2, 2, 21] },
    { data: new Float32Array(4 * 4 * 21), shape: [1, 4, 4, 21] }];
  const bad = { data: new Float32Array([10, 10, 20, 20, 2]), shape: [1, 1, 5] };
  await assert.rejects(client.compute(outs, { boxes: bad }), (e) =>
    e instanceof YoloLossError && e.status === 400 && /class id/.test(e.serverMessage) &&
    /boxes\[0\]\[0\]/.test(e.message));
  const nan = outs.map((t) => ({ ...t, data: t.data.slice() }));
  nan[1].data[1] = NaN; // t_y of an anchor: sent dense and compact alike
  const ok = { data: new Float32Array(5), shape: [1, 1, 5] };
  await assert.rejects(client.compute(nan, { boxes: ok }), (e) => e.status === 400 && /output_1/.test(e.message));
  // a class logit of an anchor without a truth: refused dense; not sent compact (the loss
  // does not read it; docs/js-client.md)
  const cls = outs.map((t) => ({ ...t, data: t.data.slice() }));
  cls[1].data[5] = NaN;
  await assert.rejects(new YoloLossClient(plain.url, { model: "yolov3-tiny", tensors: "dense" })
    .compute(cls, { boxes: ok }), (e) => e.status === 400 && /output_1/.test(e.message));
  const r = await new YoloLossClient(plain.url, { model: "yolov3-tiny", tensors: "compact" })
    .compute(cls, { boxes: ok });
  assert.ok(r.compact && Number.isFinite(r.loss));
  await assert.rejects(client.compute(nan, { boxes: ok, binary: false }), RangeError);
  await assert.rejects(client.compute(outs.slice(0, 1), { boxes: ok }), (e) => e.status === 400);
  await assert.rejects(new YoloLossClient(plain.url, { model: "nope" }).compute(outs, { boxes: ok }),
    (e) => e.status === 404 && /nope/.test(e.message));
  await assert.rejects(client.compute(outs, {}), TypeError);
  await assert.rejects(client.compute([{ data: new Uint16Array(4), shape: [4] }], { boxes: ok }), TypeError);
  await assert.rejects(client.compute([{ data: new Float32Array(3), shape: [4] }], { boxes: ok }), TypeError);
  assert.ok((await client.compute(outs, { boxes: ok })).loss > 0); // still serving
  await assert.rejects(new YoloLossClient("http://127.0.0.1:9", { retry: false }).compute(outs, { boxes: ok }),
    (e) => e instanceof YoloLossError && e.status === null);
});

test("bearer token", async () => {
  const outs = [{ data: new Float32Array(18), shape: [1, 1, 1, 18] },
    { data: new Float32Array(72), shape: [1, 2, 2, 18] }];
  const boxes = { data: new Float32Array(5), shape: [1, 1, 5] };
  const anon = new YoloLossClient(guarded.url, { model: "yolov3-tiny" });
  assert.equal(await anon.live(), true);
  await assert.rejects(anon.compute(outs, { boxes }), (e) => e.status === 401);
  const wrong = new YoloLossClient(guarded.url, { model: "yolov3-tiny", token: "nah" });
  await assert.rejects(wrong.modelMetadata(), (e) => e.status === 401);
  const ok = new YoloLossClient(guarded.url, { model: "yolov3-tiny", token: "js-token" });
  assert.ok((await ok.compute(outs, { boxes })).loss > 0);
});

test("metadata", async () => {
  const client = new YoloLossClient(plain.url);
  assert.equal(await client.live(), true);
  assert.equal(await client.ready(), true);
  assert.equal(await client.modelReady(), true);
  assert.equal(await client.modelReady("nope"), false);
  const meta = await client.serverMetadata();
  assert.ok(meta.extensions.includes("binary_tensor_data"));
  const m = await client.modelMetadata("yolov3-tiny");
  assert.deepEqual(m.inputs.slice(0, 2).map((i) => i.name), ["output_0", "output_1"]);
  const cfg = await client.modelConfig();
  assert.ok(cfg.parameters.anchors.string_value.startsWith("10,13,16,30"));
  const st = await client.statistics("*");
  assert.ok(st.model_stats.length >= 2);
});

// ---- compact tensors, FP64 gradients ----------------------------------------------------

test("compact and dense tensors give the same bits; FP64 gradients match the reference", async () => {
  let compactCalls = 0;
  for (const c of referenceCases()) {
    const dense = new YoloLossClient(plain.url, { model: c.model, tensors: "dense" });
    const compact = new YoloLossClient(plain.url, { model: c.model, tensors: "compact" });
    const auto = new YoloLossClient(plain.url, { model: c.model });
    const [outs, opts] = args(c);
    for (const gradDatatype of ["FP32", "FP64"]) {
      const a = await dense.compute(outs, { ...opts, grads: true, gradDatatype });
      assert.equal(a.compact, false);
      const others = [await compact.compute(outs, { ...opts, grads: true, gradDatatype }),
        await compact.compute(outs, { ...opts, grads: true, gradDatatype, binary: false }),
        await auto.compute(outs, { ...opts, grads: true, gradDatatype })];
      for (const b of others) {
        assert.equal(b.compact, true);
        compactCalls++;
        assert.ok(Object.is(a.loss, b.loss));
        assert.deepEqual(b.terms, a.terms);
        assert.deepEqual(b.layerTerms, a.layerTerms);
        assert.deepEqual(b.imageTerms, a.imageTerms);
        assert.deepEqual(b.stats, a.stats);
        assert.deepEqual(b.gradShapes, a.gradShapes);
        a.grads.forEach((g, l) => assert.deepEqual(b.grads[l], g, `grad_${l}`));
      }
      if (gradDatatype === "FP64") {
        a.grads.forEach((g, l) => {
          assert.ok(g instanceof Float64Array);
          const want = c.expect.grads[l];
          for (let i = 0; i < want.length; i++) {
            if (!(Math.abs(g[i] - want[i]) <= 1e-9 * Math.max(1, Math.abs(want[i])))) {
              assert.fail(`seed ${c.seed} FP64 grad_${l}[${i}]: ${g[i]} vs ${want[i]}`);
            }
          }
        });
      }
      // the compact gradient as sent: channel 4 and the rows of the dense one
      const k = await compact.compute(outs, { ...opts, grads: true, gradDatatype, gradLayout: "compact" });
      assert.equal(k.grads, null);
      k.compactGrads.forEach((cg, l) => {
        const R = a.grads[l].length / cg.obj.length;
        cg.obj.forEach((v, i) => assert.ok(Object.is(v, a.grads[l][i * R + 4])));
        Array.from(cg.index, Number).forEach((anchor, r) =>
          assert.deepEqual(cg.rows.subarray(r * R, (r + 1) * R), a.grads[l].subarray(anchor * R, (anchor + 1) * R)));
      });
    }
  }
  assert.ok(compactCalls >= 60);
});
