// bench_client_js: what the JavaScript client's transports cost on the standard workload,
// dense vs compact tensors, socket vs shared memory, for YoloLossClient.compute, all measured
// in the same run against one daemon, beside the daemon's own core time for the same
// requests.
//
//   node bench/bench_client_js.js [--daemon build/yololossd] [--threads 2] [--rounds 7]
//                                 [--batch 16] [--classes 80]
//
// Standard workload (bench_wire's and bench_client_python's): B = 16, 416x416 (grids 13, 26,
// 52), 80 classes, 8 boxes per image, fp32 logits from N(0, 1) with a fixed seed (this
// file's own generator: not the numpy draws, the same sizes). The modes run in alternating
// rounds (one call of each per round, after one warm-up call each) so that drift of a shared
// machine falls on all of them alike; the median of the rounds is reported. The in-process
// comparison is the daemon's compute_infer time per request over the same calls (its
// statistics extension: the core alone, on the daemon's threads), read before and after each
// mode's calls. Every answer is checked to be the same bits as the dense wire call's. One
// JSON line per configuration, then a summary line; no thresholds.

import { spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";

import { YoloLossClient } from "../clients/js/yololoss.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const opt = { daemon: join(ROOT, "build", "yololossd"), threads: 2, rounds: 7, batch: 16, classes: 80 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, "");
  if (!(k in opt) || process.argv[i + 1] === undefined) {
    console.error(`usage: node bench/bench_client_js.js [--${Object.keys(opt).join(" N] [--")} N]`);
    process.exit(2);
  }
  opt[k] = k === "daemon" ? process.argv[i + 1] : Number(process.argv[i + 1]);
}

function startDaemon() {
  return new Promise((ok, fail) => {
    const p = spawn(opt.daemon, ["--host", "127.0.0.1", "--port", "0", "--threads",
      String(opt.threads), "--history", "none"], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m && !p.url) { p.url = m[1]; ok(p); }
    });
    p.on("exit", (code) => { if (!p.url) fail(new Error(`${opt.daemon} exited ${code}: ${err}`)); });
  });
}

// xorshift128+ and Box-Muller: a fixed, fast N(0, 1)
let s0 = 0x9e3779b97f4a7c15n, s1 = 0xbf58476d1ce4e5b9n;
const M64 = (1n << 64n) - 1n;
function uniform() {
  let x = s0;
  const y = s1;
  s0 = y;
  x = (x ^ (x << 23n)) & M64;
  s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
  return Number(((s1 + y) & M64) >> 11n) / 2 ** 53;
}
function normal(n) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform())), t = 2 * Math.PI * uniform();
    a[i] = r * Math.cos(t);
    if (i + 1 < n) a[i + 1] = r * Math.sin(t);
  }
  return a;
}

function workload(B, C) {
  const outs = [13, 26, 52].map((s) => ({ data: normal(B * s * s * 3 * (5 + C)), shape: [B, s, s, 3 * (5 + C)] }));
  const boxes = new Float32Array(B * 8 * 5);
  for (let k = 0; k < B * 8; k++) {
    const w = 16 + 184 * uniform(), h = 16 + 184 * uniform();
    const x = w / 2 + (416 - w) * uniform(), y = h / 2 + (416 - h) * uniform();
    boxes.set([x - w / 2, y - h / 2, x + w / 2, y + h / 2, Math.floor(C * uniform())], k * 5);
  }
  return { outs, boxes: { data: boxes, shape: [B, 8, 5] } };
}

async function computeNs(url) {
  const j = await (await fetch(`${url}/v2/models/yolov3/stats`)).json();
  const s = j.model_stats[0].inference_stats.compute_infer;
  return { count: s.count, ns: s.ns };
}

function sameBits(a, b) {
  if (!Object.is(a.loss, b.loss)) return false;
  if ((a.grads === null) !== (b.grads === null)) return false;
  return (a.grads ?? []).every((g, l) => {
    const x = new Uint8Array(g.buffer, g.byteOffset, g.byteLength);
    const y = new Uint8Array(b.grads[l].buffer, b.grads[l].byteOffset, b.grads[l].byteLength);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };

const daemon = await startDaemon();
try {
  const { outs, boxes } = workload(opt.batch, opt.classes);
  const modes = [];
  for (const tensors of ["dense", "compact"]) for (const shm of ["wire", "shm"]) modes.push({ tensors, shm });
  const clients = modes.map((m) => new YoloLossClient(daemon.url, { model: "yolov3", ...m }));
  const summary = {};
  let allIdentical = true;
  for (const grads of [false, true]) {
    const ref = await clients[0].compute(outs, { boxes, grads }); // dense wire: the reference
    for (const c of clients) allIdentical &&= sameBits(ref, await c.compute(outs, { boxes, grads })); // warm-up
    const times = modes.map(() => []), core = modes.map(() => ({ count: 0, ns: 0 }));
    const last = modes.map(() => null);
    for (let r = 0; r < opt.rounds; r++) {
      for (let k = 0; k < modes.length; k++) {
        const before = await computeNs(daemon.url);
        const t0 = performance.now();
        last[k] = await clients[k].compute(outs, { boxes, grads });
        times[k].push(performance.now() - t0);
        const after = await computeNs(daemon.url);
        core[k].count += after.count - before.count;
        core[k].ns += after.ns - before.ns;
      }
    }
    modes.forEach((m, k) => {
      const ms = median(times[k]), coreMs = core[k].ns / core[k].count / 1e6;
      const identical = sameBits(ref, last[k]);
      allIdentical &&= identical;
      summary[`${grads ? "grads" : "loss"}:${m.tensors}+${m.shm}`] = ms;
      console.log(JSON.stringify({ bench: "client_js", api: "YoloLossClient.compute", grads,
        tensors: m.tensors, transport: m.shm, shared_memory: last[k].sharedMemory,
        batch: opt.batch, classes: opt.classes, threads: opt.threads, median_ms: +ms.toFixed(3),
        min_ms: +Math.min(...times[k]).toFixed(3), daemon_core_ms: +coreMs.toFixed(3),
        ratio_to_core: +(ms / coreMs).toFixed(2), request_bytes: last[k].bytesSent,
        response_bytes: last[k].bytesReceived, identical_to_dense_wire: identical,
        rounds: opt.rounds }));
    });
  }
  const base = summary["grads:dense+wire"];
  console.log(JSON.stringify({ bench: "client_js", summary: true, node: process.version,
    all_identical: allIdentical,
    compute_grads_speedup_vs_dense_wire: Object.fromEntries(modes.map((m) =>
      [`${m.tensors}+${m.shm}`, +(base / summary[`grads:${m.tensors}+${m.shm}`]).toFixed(2)])) }));
  await Promise.all(clients.map((c) => c.close()));
} finally {
  daemon.kill("SIGTERM");
}
