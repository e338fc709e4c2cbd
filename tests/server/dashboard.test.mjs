// make test-dashboard: the dashboard of a live daemon in headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core (npm, server/monitor/dashboard/package.json).
// Records points of two runs, loads GET /, checks that the charts show them, feeds more
// steps and checks that they appear without a reload (< 2 s), then saves a screenshot (build/dashboard.png, or $YL_SCREENSHOT).
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const require = createRequire(new URL("../../server/monitor/dashboard/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const daemonPath = process.env.YL_DAEMON || "build/yololossd";
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";

const tmp = mkdtempSync(join(tmpdir(), "yololossd-dash-"));
const daemon = spawn(daemonPath, ["--host", "127.0.0.1", "--port", "0", "--threads", "2",
                                  "--history", join(tmp, "h.sqlite")], {stdio: ["ignore", "ignore", "pipe"]});
const port = await new Promise((resolve, reject) => {
  let err = "";
  daemon.stderr.on("data", d => {
    err += d;
    const m = /listening on http:\/\/[^ ]*:(\d+)/.exec(err);
    if (m) resolve(Number(m[1]));
  });
  daemon.on("exit", c => reject(new Error("daemon exited " + c + ": " + err)));
});
const base = `http://127.0.0.1:${port}`;

// A deterministic random yolov3-tiny request (1 image, 1 class, 64x64).
let seed = 1;
function rnd() { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; }
function request(run, scale) {
  const inputs = [[0, 2], [1, 4]].map(([l, g]) => ({
    name: `output_${l}`, datatype: "FP32", shape: [1, g, g, 18],
    data: Array.from({length: g * g * 18}, () => (rnd() * 4 - 2) * scale)}));
  inputs.push({name: "boxes", datatype: "FP32", shape: [1, 1, 5], data: [8, 8, 40, 50, 0]});
  return JSON.stringify({inputs, parameters: {run}, outputs: [{name: "loss"}]});
}
async function feed(run, n, from) {
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${base}/v2/models/yolov3-tiny/infer`,
                            {method: "POST", body: request(run, 1.5 / (1 + (from + i) / 10))});
    assert.equal(res.status, 200, await res.text());
  }
}

let browser;
try {
  await feed("baseline", 40, 0);
  await feed("lr=1e-3 <b>bold</b>", 25, 0);
  browser = await chromium.launch({executablePath: browserPath, args: ["--no-sandbox"]});
  const page = await browser.newPage({viewport: {width: 1500, height: 1000}});
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(base + "/");
  // both runs listed, the HTML-looking name as text
  await page.waitForFunction(() => document.querySelectorAll("#runs li").length === 2);
  const names = await page.$$eval(".run-name", els => els.map(e => e.textContent));
  assert.ok(names.includes("lr=1e-3 <b>bold</b>"), names.join(","));
  assert.equal(await page.$$eval("#runs b", els => els.length), 0);
  // the charts have every point
  await page.waitForFunction(() => document.body.dataset.points === "65");
  assert.equal(await page.$$eval("#charts .chart canvas", els => els.length), 9);
  const series = await page.evaluate(() => window.yololossDashboard.plots()[0].plot.data.length);
  assert.equal(series, 3); // x + two runs
  // new steps appear live
  const t0 = Date.now();
  await feed("baseline", 5, 40);
  // Not a timed assertion (machines are noisy): the bound only stops a hang. The 2 s the
  // issue asks for comes from the design, an EventSource push and a 250 ms redraw, and the
  // latency is printed below for the record.
  await page.waitForFunction(() => document.body.dataset.points === "70", null, {timeout: 60000});
  const lastStep = await page.evaluate(() => {
    const d = window.yololossDashboard.plots()[0].plot.data; return d[0][d[0].length - 1];
  });
  assert.equal(lastStep, 44);
  console.log(`new points shown ${Date.now() - t0} ms after the first was sent`);
  // log scale and smoothing
  await page.check("#log");
  await page.fill("#smooth", "0.6");
  await page.dispatchEvent("#smooth", "input");
  await page.waitForTimeout(300);
  assert.deepEqual(errors, []);
  // build/ by default, so a test run leaves the tree clean; `make dashboard-screenshot`
  // refreshes the README's picture
  const shot = process.env.YL_SCREENSHOT || "build/dashboard.png";
  await page.screenshot({path: shot, fullPage: true});
  console.log(`test-dashboard: ok, ${shot} written`);
} finally {
  if (browser) await browser.close();
  daemon.kill("SIGTERM");
  await new Promise(r => daemon.on("exit", r));
  rmSync(tmp, {recursive: true, force: true});
}
