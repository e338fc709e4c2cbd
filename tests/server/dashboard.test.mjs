// make test-dashboard: the dashboard of a live daemon in headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core (npm, server/monitor/dashboard/package.json).
// Records points of two runs (with configurations and a logged scalar) and a run with
// image ids, loads GET /, checks that the charts show them, feeds more steps and checks that
// they appear without a reload, checks the configuration table, enlarging a chart, the CSV
// of a chart, the wall-time axis, and the images view (the ranking as the API gives it, the
// links from --image-url escaped, an image's curve, the CSV of the ranking), the streamed
// evaluations (a run with eval batches at two steps: the AP / AP50 / AP75 chart has the API's
// numbers, the per-class AP table sorts by class and by AP), then saves screenshots
// (build/dashboard.png or $YL_SCREENSHOT, build/dashboard-images.png, build/dashboard-eval.png
// or $YL_EVAL_SCREENSHOT).
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const require = createRequire(new URL("../../server/monitor/dashboard/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const daemonPath = process.env.YL_DAEMON || "build/yololossd";
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";

const tmp = mkdtempSync(join(tmpdir(), "yololossd-dash-"));
// markup and quotes in the template: the links must carry them as text, never as HTML
const IMAGE_URL = 'http://img.example/pics/{id}.jpg?tag=<i>x</i>&q="y"';
const daemon = spawn(daemonPath, ["--host", "127.0.0.1", "--port", "0", "--threads", "2",
                                  "--history", join(tmp, "h.sqlite"),
                                  "--image-url", IMAGE_URL], {stdio: ["ignore", "ignore", "pipe"]});
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
// A batch of 4 images with ids, for the images view; image 7's box is far from where the
// others are (a wrong label).
function imageRequest(run, step, ids) {
  const inputs = [[0, 2], [1, 4]].map(([l, g]) => ({
    name: `output_${l}`, datatype: "FP32", shape: [4, g, g, 18],
    data: Array.from({length: 4 * g * g * 18}, () => rnd() * 2 - 1)}));
  inputs.push({name: "boxes", datatype: "FP32", shape: [4, 1, 5],
               data: ids.flatMap(id => id === 7 ? [2, 2, 63, 63, 0] : [20, 20, 36, 40, 0])});
  return JSON.stringify({inputs, parameters: {run, step, image_ids: ids.join(",")}, outputs: [{name: "loss"}]});
}
// A 3-class yolov3-tiny batch of one 64x64 image for parameter eval: the truths given, and
// heads that decode (keras's yolo_eval) to exactly the detections given ({cx, cy, w, h, cls},
// each in its own cell of the 4x4 layer, anchor 1 (23x27)); every other anchor's objectness
// is -20, so nothing else passes the 0.6 score threshold.
function evalRequest(run, step, truths, dets) {
  const C = 3, D = 5 + C;
  const layer = g => { const a = new Array(g * g * 3 * D).fill(0); for (let k = 4; k < a.length; k += D) a[k] = -20; return a; };
  const l0 = layer(2), l1 = layer(4);
  const logit = p => Math.log(p / (1 - p));
  for (const d of dets) {
    const i = Math.floor(d.cx / 16), j = Math.floor(d.cy / 16), o = (j * 4 + i) * 3 * D;
    l1[o] = logit(d.cx / 16 - i); l1[o + 1] = logit(d.cy / 16 - j);
    l1[o + 2] = Math.log(d.w / 23); l1[o + 3] = Math.log(d.h / 27); l1[o + 4] = 10;
    for (let c = 0; c < C; c++) l1[o + 5 + c] = c === d.cls ? 10 : -10;
  }
  const inputs = [{name: "output_0", datatype: "FP32", shape: [1, 2, 2, 3 * D], data: l0},
                  {name: "output_1", datatype: "FP32", shape: [1, 4, 4, 3 * D], data: l1},
                  {name: "boxes", datatype: "FP32", shape: [1, truths.length, 5], data: truths.flat()}];
  return JSON.stringify({inputs, parameters: {run, step, eval: true, image_offset: 0}, outputs: [{name: "loss"}]});
}
async function api(method, path, body) {
  const res = await fetch(base + path, {method, body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await res.text();
  assert.equal(res.status, 200, `${method} ${path}: ${text}`);
  return JSON.parse(text);
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
  for (let step = 0; step < 8; step++) {
    const res = await fetch(`${base}/v2/models/yolov3-tiny/infer`, {method: "POST",
      body: imageRequest("images", step, [0, 1, 2, 3].map(k => (step * 4 + k) % 12))});
    assert.equal(res.status, 200, await res.text());
  }
  await api("PUT", "/v1/runs/baseline/config", {lr: 0.001, batch: 16, optimizer: "adam"});
  await api("PUT", "/v1/runs/" + encodeURIComponent("lr=1e-3 <b>bold</b>") + "/config",
            {lr: 0.01, batch: 16, note: "<img src=x onerror=alert(1)>"});
  for (const step of [0, 20, 39]) await api("POST", "/v1/runs/baseline/scalars", {step, lr: 0.001 / (1 + step)});
  browser = await chromium.launch({executablePath: browserPath, args: ["--no-sandbox"]});
  const page = await browser.newPage({viewport: {width: 1500, height: 1000}});
  const errors = [], streams = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("request", q => { if (q.url().includes("/events")) streams.push(q.url()); });
  page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(base + "/");
  // both runs listed, the HTML-looking name as text
  await page.waitForFunction(() => document.querySelectorAll("#runs li").length === 3);
  const names = await page.$$eval(".run-name", els => els.map(e => e.textContent));
  assert.ok(names.includes("lr=1e-3 <b>bold</b>"), names.join(","));
  assert.equal(await page.$$eval("#runs b", els => els.length), 0);
  // the charts have every point
  await page.waitForFunction(() => document.body.dataset.points === "73");
  // nine charts of the points and one of the scalar the loop logged
  await page.waitForSelector("#chart-scalar-lr canvas");
  assert.equal(await page.$$eval("#charts .chart canvas", els => els.length), 10);
  const series = await page.evaluate(() => window.yololossDashboard.plots()[0].plot.data.length);
  assert.equal(series, 4); // x + three runs
  // the configurations side by side: lr differs, batch does not; values are text
  await page.waitForSelector("#config tbody tr");
  const cfg = await page.$$eval("#config tbody tr", trs => trs.map(tr => [tr.className, ...[...tr.cells].map(c => c.textContent)]));
  const row = k => cfg.find(r => r[1] === k);
  assert.equal(row("lr")[0], "differs");
  const heads = await page.$$eval("#config thead th", ths => ths.map(th => th.textContent));
  const col = run => 1 + heads.indexOf(run); // cells after the row's class
  assert.equal(row("lr")[col("baseline")], "0.001");
  assert.equal(row("lr")[col("lr=1e-3 <b>bold</b>")], "0.01");
  assert.equal(row("batch")[0], "");
  assert.equal(row("note")[col("lr=1e-3 <b>bold</b>")], "<img src=x onerror=alert(1)>");
  assert.equal(row("note")[col("baseline")], "");
  assert.equal(await page.$$eval("#config img, #config b", els => els.length), 0);
  // new steps appear live
  const t0 = Date.now();
  await feed("baseline", 5, 40);
  // Not a timed assertion (machines are noisy): the bound only stops a hang. The 2 s the
  // issue asks for comes from the design, an EventSource push and a 250 ms redraw, and the
  // latency is printed below for the record.
  await page.waitForFunction(() => document.body.dataset.points === "78", null, {timeout: 60000});
  const lastStep = await page.evaluate(() => {
    const d = window.yololossDashboard.plots()[0].plot.data; return d[0][d[0].length - 1];
  });
  assert.equal(lastStep, 44);
  console.log(`new points shown ${Date.now() - t0} ms after the first was sent`);
  // one multiplexed stream for the page (no per-run streams), carrying both runs
  assert.ok(streams.every(u => u.includes("/v1/events?")), streams.join(" "));
  const url = await page.evaluate(() => window.yololossDashboard.stream().url);
  assert.ok(url.includes("run=baseline") && url.includes("run=lr%3D1e-3%20%3Cb%3Ebold%3C%2Fb%3E"), url);
  // log scale and smoothing
  await page.check("#log");
  await page.fill("#smooth", "0.6");
  await page.dispatchEvent("#smooth", "input");
  await page.waitForTimeout(300);
  assert.deepEqual(errors, []);
  // build/ by default, so a test run leaves the tree clean (the README's pictures come from
  // real training runs: `make docs-screenshots`)
  const shot = process.env.YL_SCREENSHOT || "build/dashboard.png";
  await page.screenshot({path: shot, fullPage: true});

  // the CSV of what a chart shows: a header, then one row per x (smoothing included)
  const plotRows = await page.evaluate(() => window.yololossDashboard.plots()[0].plot.data[0].length);
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#chart-total .csv")]);
  const csv = readFileSync(await dl.path(), "utf8").trimEnd().split("\r\n");
  assert.equal(dl.suggestedFilename(), "total.csv");
  assert.equal(csv[0], '"step",' + (await page.evaluate(() =>
    window.yololossDashboard.plots()[0].plot.series.slice(1).map(s => '"' + s.label + '"').join(","))));
  assert.deepEqual(csv[0].split(",").slice(1).sort(), ['"baseline"', '"images"', '"lr=1e-3 <b>bold</b>"']);
  assert.equal(csv.length, 1 + plotRows);
  // enlarging one chart
  const width = () => page.$eval("#chart-total canvas", c => c.getBoundingClientRect().width);
  const w0 = await width();
  await page.click("#chart-total .enlarge");
  await page.waitForSelector("#chart-total.big");
  assert.ok(await width() > 2 * w0, "the enlarged chart is not larger");
  await page.click("#chart-total .enlarge");
  await page.waitForSelector("#chart-total:not(.big)");
  // x by wall time: the x values are the points' wall times (seconds since the epoch)
  await page.selectOption("#xaxis", "wall");
  const walls = await page.evaluate(() => window.yololossDashboard.plots()[0].plot.data[0]);
  const points = (await api("GET", "/v1/runs/baseline/steps?limit=1000")).points;
  for (const p of points) assert.ok(walls.includes(p.wall), `wall ${p.wall} of step ${p.step} not on the x axis`);
  assert.equal(await page.evaluate(() => window.yololossDashboard.plots()[0].plot.scales.x.time), true);
  const wallShot = "build/dashboard-wall.png"; // for a look only
  await page.screenshot({path: wallShot, clip: {x: 0, y: 0, width: 1500, height: 360}});
  await page.selectOption("#xaxis", "step");

  // the images view: the ranking as the API gives it
  await page.click("#tab-images");
  await page.selectOption("#img-run", "images");
  const ranking = await api("GET", "/v1/runs/images/images?order=loss&window=5&limit=50");
  assert.equal(ranking.images_total, 12);
  await page.waitForFunction(() => document.body.dataset.images === "12");
  const rows = await page.$$eval("#img-table tbody tr", trs => trs.map(tr => [...tr.cells].map(c => c.textContent)));
  assert.deepEqual(rows.map(r => Number(r[1])), ranking.images.map(o => o.image));
  assert.equal(rows[0][2], Number(ranking.images[0].score).toPrecision(4));
  // the links: the server's URL as an attribute value, its markup never parsed
  const hrefs = await page.$$eval("#img-table a", as => as.map(a => [a.getAttribute("href"), a.target, a.rel]));
  assert.equal(hrefs.length, 12);
  assert.deepEqual(hrefs[0], [IMAGE_URL.replace("{id}", String(ranking.images[0].image)), "_blank", "noopener noreferrer"]);
  assert.equal(await page.$$eval("#img-table i", els => els.length), 0);
  // one image's curve: a point per appearance, against the step, then against wall time
  const first = ranking.images[0];
  await page.click("#img-table tbody tr:first-child td:nth-child(3)");
  await page.waitForFunction(id => document.body.dataset.imageCurve === id, String(first.image));
  assert.equal(await page.$eval("#img-chart", d => d.dataset.points), String(first.appearances));
  const hist = (await api("GET", `/v1/runs/images/images/${first.image}`)).history;
  let curve = await page.evaluate(() => window.yololossDashboard.imageCurve().data);
  assert.deepEqual(curve[0], hist.map(o => o.step));
  assert.deepEqual(curve[1], hist.map(o => o.relative));
  await page.selectOption("#xaxis", "wall");
  await page.waitForFunction(() => window.yololossDashboard.imageCurve().data[0][0] > 1e9);
  curve = await page.evaluate(() => window.yololossDashboard.imageCurve().data);
  assert.equal(curve[0].length, hist.length);
  // the ranking as CSV
  const [dl2] = await Promise.all([page.waitForEvent("download"), page.click("#img-csv")]);
  const rcsv = readFileSync(await dl2.path(), "utf8").trimEnd().split("\r\n");
  assert.equal(rcsv[0], '"rank","image","score","appearances","used","last_step","last_value","mean_value","last_truths","url"');
  assert.equal(rcsv.length, 13);
  // per image instead of per box (the default): the API's other order
  const perImage = await api("GET", "/v1/runs/images/images?order=loss&per=image&window=5&limit=50");
  await page.selectOption("#img-per", "image");
  await page.waitForFunction(() => document.getElementById("img-summary").textContent.includes("per image"));
  const rowsImage = await page.$$eval("#img-table tbody tr", trs => trs.map(tr => [...tr.cells].map(c => c.textContent)));
  assert.deepEqual(rowsImage.map(r => Number(r[1])), perImage.images.map(o => o.image));
  assert.equal(rowsImage[0][2], Number(perImage.images[0].score).toPrecision(4));
  await page.selectOption("#img-per", "box");
  assert.deepEqual(errors, []);
  const shot2 = join(dirname(shot), "dashboard-images.png");
  await page.screenshot({path: shot2, fullPage: true});

  // Evaluations: one image with a truth of each class. Step 3: class 0 found 3 px off (IoU
  // 504/648 = 0.78: matched up to the 0.75 threshold, AP 0.6), class 1 exactly, class 2 missed (its detection
  // elsewhere); step 5: all three exactly. So the classes' APs differ, in another order
  // than the classes'.
  await page.click("#tab-charts");
  await page.selectOption("#xaxis", "step"); // the images view left it on wall time
  const truths = [[8, 8, 32, 32, 0], [40, 36, 60, 56, 1], [8, 40, 28, 60, 2]];
  for (const [step, dets] of [
    [3, [{cx: 23, cy: 20, w: 24, h: 24, cls: 0}, {cx: 50, cy: 46, w: 20, h: 20, cls: 1}, {cx: 8, cy: 8, w: 20, h: 20, cls: 2}]],
    [5, [{cx: 20, cy: 20, w: 24, h: 24, cls: 0}, {cx: 50, cy: 46, w: 20, h: 20, cls: 1}, {cx: 18, cy: 50, w: 20, h: 20, cls: 2}]]]) {
    const res = await fetch(`${base}/v2/models/yolov3-tiny/infer`, {method: "POST", body: evalRequest("evaluated", step, truths, dets)});
    assert.equal(res.status, 200, await res.text());
  }
  const listed = await api("GET", "/v1/runs/evaluated/evals");
  assert.deepEqual(listed.steps, [{step: 3, images: 1, classes: 3}, {step: 5, images: 1, classes: 3}]);
  const byStep = {3: await api("GET", "/v1/runs/evaluated/eval?step=3"), 5: await api("GET", "/v1/runs/evaluated/eval?step=5")};
  assert.ok(byStep[3].stats[0] < byStep[5].stats[0], `AP ${byStep[3].stats[0]} then ${byStep[5].stats[0]}`);
  // the chart: AP, AP50, AP75 of the run at both steps, the API's numbers
  await page.waitForSelector("#chart-eval canvas", {timeout: 60000});
  await page.waitForFunction(() => window.yololossDashboard.plots().some(p => p.chart.id === "eval" && p.plot.data[0].length === 2),
                             null, {timeout: 60000});
  const evalPlot = await page.evaluate(() => {
    const p = window.yololossDashboard.plots().find(q => q.chart.id === "eval");
    return {data: p.plot.data, labels: p.plot.series.map(s => s.label)};
  });
  assert.deepEqual(evalPlot.data[0], [3, 5]);
  assert.deepEqual(evalPlot.labels.slice(1), ["evaluated AP", "evaluated AP50", "evaluated AP75"]);
  for (let k = 0; k < 3; k++) assert.deepEqual(evalPlot.data[1 + k], [byStep[3].stats[k], byStep[5].stats[k]], `stat ${k}`);
  // the per-class table: the newest step first, sorted by class, by AP (high first), then back
  await page.waitForFunction(() => document.body.dataset.evalRows === "3");
  await page.selectOption("#eval-run", "evaluated");
  const table = () => page.$$eval("#eval-table tbody tr", trs => trs.map(tr => [...tr.cells].map(c => c.textContent)));
  const want = (step, order) => order.map(k => byStep[step].per_class[k]).map(o => [String(o.class), Number(o.ap).toPrecision(4), Number(o.ap50).toPrecision(4)]);
  assert.equal(await page.$eval("#eval-step", s => s.value), "5");
  assert.deepEqual(await table(), want(5, [0, 1, 2]));
  await page.selectOption("#eval-step", "3");
  assert.deepEqual(await table(), want(3, [0, 1, 2]));
  const apOrder = [0, 1, 2].sort((a, b) => byStep[3].per_class[b].ap - byStep[3].per_class[a].ap || a - b);
  assert.notDeepEqual(apOrder, [0, 1, 2], "the classes' APs should not be in class order");
  await page.click("#eval-table th[data-key=ap]");
  assert.deepEqual(await table(), want(3, apOrder));
  await page.click("#eval-table th[data-key=ap]");
  assert.deepEqual(await table(), want(3, apOrder.slice().reverse()));
  await page.click("#eval-table th[data-key=class]");
  assert.deepEqual(await table(), want(3, [0, 1, 2]));
  await page.click("#eval-table th[data-key=class]");
  assert.deepEqual(await table(), want(3, [2, 1, 0]));
  await page.click("#eval-table th[data-key=ap]");
  assert.deepEqual(errors, []);
  const shot3 = process.env.YL_EVAL_SCREENSHOT || join(dirname(shot), "dashboard-eval.png");
  await page.screenshot({path: shot3, fullPage: true});
  console.log(`test-dashboard: ok, ${shot}, ${shot2} and ${shot3} written`);
} finally {
  if (browser) await browser.close();
  daemon.kill("SIGTERM");
  await new Promise(r => daemon.on("exit", r));
  rmSync(tmp, {recursive: true, force: true});
}
