// What the JS tests share (kept out of test/, where node --test would run it as a test
// file): a yololossd started on a free loopback port (YL_DAEMON, default build/yololossd),
// and random cases of the project's numpy reference (tests/reference, through
// test/make_cases.py and Debian's python3) turned into client arguments.

import { spawn, execFileSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..", "..");
const DAEMON = resolve(ROOT, process.env.YL_DAEMON ?? "build/yololossd");
const PYTHON = process.env.PYTHON ?? "/usr/bin/python3";

/** A daemon on 127.0.0.1 (port 0: a free one, unless flags name one); resolves to its
 * process, with .url set once it listens. */
export function startDaemon(...flags) {
  return new Promise((ok, fail) => {
    const port = flags.includes("--port") ? [] : ["--port", "0"];
    const p = spawn(DAEMON, ["--host", "127.0.0.1", ...port, ...flags],
      { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => { p.kill(); fail(new Error(`no daemon: ${err}`)); }, 20000);
    p.stderr.on("data", (d) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m && !p.url) {
        clearTimeout(timer);
        p.url = m[1];
        ok(p);
      }
    });
    p.on("error", (e) => { clearTimeout(timer); fail(e); });
    p.on("exit", (code) => { if (!p.url) { clearTimeout(timer); fail(new Error(`daemon exited ${code}: ${err}`)); } });
  });
}

export function stopDaemon(p) {
  return new Promise((ok) => {
    if (!p || p.exitCode !== null) return ok();
    p.on("exit", () => ok());
    p.kill("SIGTERM");
  });
}

/** The reference's random cases of these seeds (make_cases.py's JSON). */
export function referenceCases(seeds) {
  const out = execFileSync(PYTHON, [join(ROOT, "clients", "js", "test", "make_cases.py"),
    ...seeds.map(String)], { maxBuffer: 1 << 28 });
  return JSON.parse(out);
}

const ARRAY = { FP32: Float32Array, FP64: Float64Array, FP16: Uint16Array, BF16: Uint16Array };
export const tensor = (t) => ({ data: ARRAY[t.dtype].from(t.data), shape: t.shape, dtype: t.dtype });

/** [outputs, options] of compute() for a reference case. */
export function args(c) {
  const outputs = c.outputs.map(tensor);
  const truth = c.boxes ? { boxes: tensor(c.boxes) } : { yTrue: c.y_true.map(tensor) };
  return [outputs, { ...truth, anchors: c.anchors, ignoreThresh: c.thresh }];
}
