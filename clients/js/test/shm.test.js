// Shared memory in yololoss.js (shm.js; docs/js-client.md) against live yololossd
// daemons: the tensors go through a region in /dev/shm and the answers are the bits of the
// wire; "auto" picks it only where it works and falls back silently when the daemon cannot
// open the object; concurrent calls each hold their own region; a region the daemon lost is
// registered again; close() and the end of the program leave no region and no file.
//
//   YL_DAEMON=build/yololossd node --test clients/js/test/shm.test.js

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { YoloLossClient, YoloLossError, isLoopback } from "../yololoss.js";
import { args, referenceCases, startDaemon, stopDaemon } from "../test-support/daemon.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const SHM = existsSync("/dev/shm") && process.platform === "linux";
const skip = SHM ? false : "no /dev/shm here";

let plain, noShm;
before(async () => {
  [plain, noShm] = await Promise.all([startDaemon("--threads", "2"),
    startDaemon("--threads", "1", "--shared-memory", "off")]);
});
after(async () => {
  await Promise.all([stopDaemon(plain), stopDaemon(noShm)]);
});

let cases = null;
const someCases = () => (cases ??= referenceCases([9200, 9201, 9202, 9203, 9204, 9205, 9206]));

/** Our objects in /dev/shm (this process's, or pid's). */
const ourFiles = (pid = process.pid) =>
  readdirSync("/dev/shm").filter((f) => f.startsWith(`yololoss-js-${pid}-`));

async function regionNames(url) {
  const resp = await fetch(`${url}/v2/systemsharedmemory/status`);
  assert.equal(resp.status, 200);
  return (await resp.json()).map((r) => r.name);
}

/** A fetch that records the JSON header of every infer request and the paths asked for;
 * edit(url, init) may change a request before it goes. */
function spy(edit = null) {
  const seen = { infer: [], paths: [] };
  seen.fetch = (url, init = {}) => {
    const path = new URL(url).pathname;
    seen.paths.push(path);
    if (path.endsWith("/infer")) {
      const h = init.headers["Inference-Header-Content-Length"];
      seen.infer.push(init.body instanceof Blob ? { blob: init.body, hlen: Number(h) }
        : JSON.parse(new TextDecoder().decode(init.body)));
    }
    if (edit) init = edit(path, init);
    return fetch(url, init);
  };
  return seen;
}

/** The same bits for everything a call returns. */
function sameAnswer(a, b, what) {
  assert.ok(Object.is(a.loss, b.loss), `${what}: loss ${a.loss} vs ${b.loss}`);
  assert.deepEqual(b.terms, a.terms, what);
  assert.deepEqual(b.layerTerms, a.layerTerms, what);
  assert.deepEqual(b.imageTerms, a.imageTerms, what);
  assert.deepEqual(b.stats, a.stats, what);
  assert.equal(b.grads === null, a.grads === null, what);
  if (a.grads) {
    assert.deepEqual(b.gradShapes, a.gradShapes, what);
    a.grads.forEach((g, l) => {
      assert.equal(b.grads[l].constructor, g.constructor, `${what}: grad_${l} type`);
      assert.deepEqual(new Uint8Array(b.grads[l].buffer, b.grads[l].byteOffset, b.grads[l].byteLength),
        new Uint8Array(g.buffer, g.byteOffset, g.byteLength), `${what}: grad_${l}`);
    });
  }
}

test("isLoopback: localhost, 127.0.0.0/8 and ::1 only", () => {
  for (const h of ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "[::1]", "::1"]) {
    assert.equal(isLoopback(h), true, h);
  }
  for (const h of ["", "10.0.0.1", "127.example.com", "example.com", "[::2]", "0.0.0.0"]) {
    assert.equal(isLoopback(h), false, h);
  }
});

test("shared memory, the wire and dense tensors give the same bits (FP32, FP64, loss only)",
  { skip }, async () => {
    let shmCalls = 0;
    for (const c of someCases()) {
      const [outs, opts] = args(c);
      const make = (tensors, shm) => {
        const s = spy();
        return [new YoloLossClient(plain.url, { model: c.model, tensors, shm, fetch: s.fetch }), s];
      };
      const [wireDense] = make("dense", "wire");
      const ways = [make("compact", "wire"), make("dense", "shm"), make("compact", "shm"),
        make("auto", "auto")];
      for (const call of [{ grads: true }, { grads: true, gradDatatype: "FP64" }, { grads: false }]) {
        const a = await wireDense.compute(outs, { ...opts, ...call });
        assert.equal(a.sharedMemory, false);
        for (const [client, s] of ways) {
          const b = await client.compute(outs, { ...opts, ...call });
          const what = `seed ${c.seed} ${client.tensors}/${client.shm} ${JSON.stringify(call)}`;
          sameAnswer(a, b, what);
          assert.equal(b.sharedMemory, client.shm !== "wire", what);
          if (b.sharedMemory) {
            shmCalls++;
            // every input and gradient in the region: the body is the JSON header alone
            const req = s.infer.at(-1);
            assert.ok(!(req instanceof Blob) && req.inputs, what);
            for (const t of [...req.inputs, ...req.outputs.filter((o) => o.name.startsWith("grad_"))]) {
              assert.equal(t.parameters.shared_memory_region, client._regions.values().next().value.name, `${what}: ${t.name}`);
              assert.equal(t.parameters.shared_memory_offset % 64, 0);
            }
            assert.equal(req.outputs.filter((o) => o.name.startsWith("grad_")).length,
              call.grads ? (b.compact ? 2 : 1) * outs.length : 0, what);
            assert.ok(b.bytesSent < 8192, `${what}: ${b.bytesSent} bytes sent`);
          }
        }
      }
      // FP64 gradients through shared memory are the reference's, within 1e-9
      const f = await ways[2][0].compute(outs, { ...opts, grads: true, gradDatatype: "FP64" });
      assert.ok(f.sharedMemory);
      f.grads.forEach((g, l) => {
        const want = c.expect.grads[l];
        for (let i = 0; i < want.length; i++) {
          if (!(Math.abs(g[i] - want[i]) <= 1e-9 * Math.max(1, Math.abs(want[i])))) {
            assert.fail(`seed ${c.seed} FP64 grad_${l}[${i}]: ${g[i]} vs ${want[i]}`);
          }
        }
      });
      // the compact gradient as sent, read from the region
      const k = await ways[2][0].compute(outs, { ...opts, grads: true, gradLayout: "compact" });
      const d = await wireDense.compute(outs, { ...opts, grads: true });
      k.compactGrads.forEach((cg, l) => {
        const R = d.grads[l].length / cg.obj.length;
        cg.obj.forEach((v, i) => assert.ok(Object.is(v, d.grads[l][i * R + 4])));
      });
      for (const [client] of ways) await client.close();
    }
    assert.ok(shmCalls >= 7 * 3 * 3);
    assert.deepEqual(ourFiles(), []);
  });

test("auto: shared memory on a loopback daemon that offers it, the wire where it is off",
  { skip }, async () => {
    const c = someCases()[0];
    const [outs, opts] = args(c);
    const on = new YoloLossClient(plain.url, { model: c.model });
    const off = new YoloLossClient(noShm.url, { model: c.model });
    const a = await on.compute(outs, { ...opts, grads: true });
    const b = await off.compute(outs, { ...opts, grads: true });
    assert.equal(a.sharedMemory, true);
    assert.equal(b.sharedMemory, false);
    assert.equal(b.compact, true); // still compact
    sameAnswer(a, b, "on/off");
    // JSON numbers always go by the wire
    const j = await on.compute(outs, { ...opts, grads: true, binary: false });
    assert.equal(j.sharedMemory, false);
    assert.ok(Object.is(j.loss, a.loss));
    // a call may choose for itself
    assert.equal((await on.compute(outs, { ...opts, shm: "wire" })).sharedMemory, false);
    assert.throws(() => new YoloLossClient(plain.url, { shm: "yes" }), TypeError);
    await assert.rejects(on.compute(outs, { ...opts, shm: "always" }), TypeError);
    await on.close();
    await off.close();
  });

test("shm forced against a daemon with shared memory off: the daemon's 400, nothing left",
  { skip }, async () => {
    const c = someCases()[1];
    const [outs, opts] = args(c);
    const client = new YoloLossClient(noShm.url, { model: c.model, shm: "shm" });
    await assert.rejects(client.compute(outs, opts), (e) => e instanceof YoloLossError &&
      e.status === 400 && /shared memory is off on this daemon/.test(e.message));
    assert.equal(client._regions.size, 0);
    assert.deepEqual(ourFiles(), []);
  });

test("a registration the daemon refuses (it cannot see the object): auto goes by the wire " +
  "from then on, shm throws", { skip }, async () => {
  // as on another host or in another mount namespace: the daemon looks for an object that
  // is not in its /dev/shm and answers its real 400
  const elsewhere = (path, init) => {
    if (!path.endsWith("/register")) return init;
    const body = JSON.parse(new TextDecoder().decode(init.body));
    body.key = "/yololoss-js-no-such-object";
    return { ...init, body: new TextEncoder().encode(JSON.stringify(body)) };
  };
  const c = someCases()[2];
  const [outs, opts] = args(c);
  const s = spy(elsewhere);
  const client = new YoloLossClient(plain.url, { model: c.model, fetch: s.fetch });
  const wire = await new YoloLossClient(plain.url, { model: c.model, shm: "wire" })
    .compute(outs, { ...opts, grads: true });
  const a = await client.compute(outs, { ...opts, grads: true });
  const b = await client.compute(outs, { ...opts, grads: true });
  for (const r of [a, b]) {
    assert.equal(r.sharedMemory, false);
    sameAnswer(wire, r, "fallback");
  }
  assert.equal(client._shmFailed, true);
  assert.equal(s.paths.filter((p) => p.endsWith("/register")).length, 1); // tried once
  assert.ok(!JSON.stringify(s.infer.at(-1)).includes("shared_memory_region"));

  const s2 = spy(elsewhere);
  const forced = new YoloLossClient(plain.url, { model: c.model, shm: "shm", fetch: s2.fetch });
  await assert.rejects(forced.compute(outs, opts), (e) => e instanceof YoloLossError &&
    e.status === 400 && /yololoss-js-no-such-object' does not exist/.test(e.message));
  assert.deepEqual(ourFiles(), []);
  assert.ok(!(await regionNames(plain.url)).some((n) => n.startsWith(`yololoss-js-${process.pid}-`)));
});

test("concurrent calls on one client each hold their own region", { skip }, async () => {
  const cs = someCases().slice(0, 4).filter((c) => c.model === someCases()[0].model);
  const client = new YoloLossClient(plain.url, { model: cs[0].model, shm: "shm" });
  const wire = new YoloLossClient(plain.url, { model: cs[0].model, shm: "wire" });
  const want = [];
  for (const c of cs) want.push(await wire.compute(...withGrads(c)));
  for (let round = 0; round < 3; round++) {
    const got = await Promise.all(cs.map((c) => client.compute(...withGrads(c))));
    got.forEach((r, k) => {
      assert.ok(r.sharedMemory);
      sameAnswer(want[k], r, `round ${round}, seed ${cs[k].seed}`);
    });
  }
  assert.ok(client._regions.size >= 2 && client._regions.size <= cs.length);
  await client.close();
});

function withGrads(c) {
  const [outs, opts] = args(c);
  return [outs, { ...opts, grads: true }];
}

test("a region grows by a new one, at least twice as large; close() unregisters and removes " +
  "everything; the client stays usable", { skip }, async () => {
  const client = new YoloLossClient(plain.url, { model: "yolov3-tiny", shm: "shm", tensors: "dense" });
  const heads = (B, H, s) => [[B, H, H, 255], [B, 2 * H, 2 * H, 255]].map((shape) => ({ shape,
    data: Float32Array.from({ length: shape.reduce((a, b) => a * b) }, (_, i) => Math.sin(i * 0.1 + s)) }));
  const boxes = (B) => ({ data: new Float32Array(B * 5).map((_, i) => [10, 20, 100, 90, 3][i % 5]), shape: [B, 1, 5] });
  const small = await client.compute(heads(1, 4, 0), { boxes: boxes(1), grads: true });
  const first = [...client._regions];
  assert.equal(first.length, 1);
  assert.equal(first[0].size, 1 << 20);
  const big = await client.compute(heads(4, 13, 1), { boxes: boxes(4), grads: true });
  const second = [...client._regions];
  assert.ok(small.sharedMemory && big.sharedMemory);
  assert.equal(second.length, 1);
  const needed = 2 * 4 * (13 * 13 + 26 * 26) * 255 * 4; // dense inputs and gradients
  assert.ok(second[0].size >= 2 * first[0].size && second[0].size >= needed, `${second[0].size}`);
  // the same bits as the wire
  sameAnswer(await new YoloLossClient(plain.url, { model: "yolov3-tiny", shm: "wire" })
    .compute(heads(4, 13, 1), { boxes: boxes(4), grads: true }), big, "grown");
  let names = await regionNames(plain.url);
  assert.ok(names.includes(second[0].name) && !names.includes(first[0].name));
  assert.deepEqual(ourFiles(), []); // unlinked once registered
  await client.close();
  names = await regionNames(plain.url);
  assert.ok(!names.some((n) => n.startsWith(`yololoss-js-${process.pid}-`)), names.join());
  assert.equal(second[0].fd, null);
  assert.ok((await client.compute(heads(1, 4, 0), { boxes: boxes(1) })).sharedMemory);
  await client.close();
  assert.deepEqual(ourFiles(), []);
});

test("a region the daemon no longer knows is registered again, once", { skip }, async () => {
  const c = someCases()[3];
  const client = new YoloLossClient(plain.url, { model: c.model, shm: "shm" });
  const a = await client.compute(...withGrads(c));
  const old = [...client._regions][0].name;
  // someone unregistered every region
  assert.equal((await fetch(`${plain.url}/v2/systemsharedmemory/unregister`, { method: "POST" })).status, 200);
  const b = await client.compute(...withGrads(c));
  sameAnswer(a, b, "again");
  assert.ok(b.sharedMemory);
  const now = [...client._regions].map((r) => r.name);
  assert.equal(now.length, 1);
  assert.notEqual(now[0], old);
  assert.deepEqual(await regionNames(plain.url), now);
  await client.close();
});

test("a restarted daemon (same port) gets a new region", { skip }, async () => {
  let d = await startDaemon("--threads", "1");
  const port = new URL(d.url).port;
  const c = someCases()[4];
  const client = new YoloLossClient(d.url, { model: c.model });
  try {
    const a = await client.compute(...withGrads(c));
    assert.ok(a.sharedMemory);
    await stopDaemon(d);
    d = await startDaemon("--threads", "1", "--port", port);
    const b = await client.compute(...withGrads(c));
    sameAnswer(a, b, "restarted");
    assert.ok(b.sharedMemory);
    assert.deepEqual(await regionNames(d.url), [...client._regions].map((r) => r.name));
    await client.close();
    assert.deepEqual(await regionNames(d.url), []);
  } finally {
    await stopDaemon(d);
  }
});

test("a program that ends without close() leaves no region and no file", { skip }, async () => {
  const c = someCases()[5];
  const child = spawn(process.execPath, ["--input-type=module", "-e", `
    import { YoloLossClient } from ${JSON.stringify(join(HERE, "..", "yololoss.js"))};
    import { args } from ${JSON.stringify(join(HERE, "..", "test-support", "daemon.js"))};
    import { readFileSync } from "node:fs";
    const c = JSON.parse(readFileSync(0, "utf8"));
    const client = new YoloLossClient(${JSON.stringify(plain.url)}, { model: c.model });
    const [outs, opts] = args(c);
    const r = await client.compute(outs, { ...opts, grads: true });
    const s = await (await fetch(${JSON.stringify(plain.url)} + "/v2/systemsharedmemory/status")).json();
    console.log(JSON.stringify({ shm: r.sharedMemory, regions: s.map((x) => x.name) }));
  `], { stdio: ["pipe", "pipe", "inherit"] });
  child.stdin.end(JSON.stringify(c));
  let out = "";
  child.stdout.on("data", (d) => { out += d; });
  const code = await new Promise((ok) => child.on("exit", ok));
  assert.equal(code, 0);
  const seen = JSON.parse(out);
  assert.equal(seen.shm, true);
  const theirs = seen.regions.filter((n) => n.startsWith(`yololoss-js-${child.pid}-`));
  assert.equal(theirs.length, 1); // registered while it ran
  const after = await regionNames(plain.url);
  assert.ok(!after.includes(theirs[0]), `left registered: ${theirs[0]}`);
  assert.deepEqual(ourFiles(child.pid), []);
});

test("an object not yet unlinked when the program exits is removed by the exit handler",
  { skip }, async () => {
    // the window between creating an object and its registration's answer: a program that
    // exits then (process.exit skips every pending request) must not leave the file
    const child = spawn(process.execPath, ["--input-type=module", "-e", `
      import { Region } from ${JSON.stringify(join(HERE, "..", "shm.js"))};
      import { existsSync } from "node:fs";
      const r = new Region(1 << 16);
      console.log(existsSync("/dev/shm" + r.key));
      process.exit(0);
    `], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => { out += d; });
    assert.equal(await new Promise((ok) => child.on("exit", ok)), 0);
    assert.equal(out.trim(), "true"); // it was there
    assert.deepEqual(ourFiles(child.pid), []);
  });

test("a client dropped without close() has its region unregistered when it is collected",
  { skip }, async () => {
    const child = spawn(process.execPath, ["--expose-gc", "--input-type=module", "-e", `
      import { YoloLossClient } from ${JSON.stringify(join(HERE, "..", "yololoss.js"))};
      const url = ${JSON.stringify(plain.url)};
      const outs = [{ data: new Float32Array(2 * 2 * 18), shape: [1, 2, 2, 18] },
        { data: new Float32Array(4 * 4 * 18), shape: [1, 4, 4, 18] }];
      const boxes = { data: new Float32Array([1, 1, 20, 20, 0]), shape: [1, 1, 5] };
      const mine = async () => (await (await fetch(url + "/v2/systemsharedmemory/status")).json())
        .map((r) => r.name).filter((n) => n.startsWith("yololoss-js-" + process.pid + "-"));
      await (async () => {
        const c = new YoloLossClient(url, { model: "yolov3-tiny" });
        if (!(await c.compute(outs, { boxes })).sharedMemory) throw new Error("no shm");
      })();
      const before = (await mine()).length;
      // collection and its finalizers are not immediate: collect until they have run
      for (let k = 0; k < 40 && (await mine()).length; k++) {
        globalThis.gc();
        await new Promise((r) => setTimeout(r, 50));
      }
      console.log(JSON.stringify({ before, after: (await mine()).length }));
    `], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => { out += d; });
    assert.equal(await new Promise((ok) => child.on("exit", ok)), 0);
    assert.deepEqual(JSON.parse(out), { before: 1, after: 0 });
  });
