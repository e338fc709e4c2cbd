// The yololossd dashboard: runs from /v1/runs, their points from /v1/runs/{run}/steps,
// new points from /v1/runs/{run}/events (Server-Sent Events). Charts are uPlot's. Run
// names are only ever set with textContent or as uPlot series labels (text), never as HTML.
"use strict";
(function () {
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const STATS = ["avg_iou", "recall50", "recall75", "avg_obj", "avg_noobj"];
  // [chart id, title, function(point) -> [values...], names of those values]
  const CHARTS = [
    ["total", "total loss", p => [p.total], [""]],
    ["xy", "xy", p => [p.xy], [""]],
    ["wh", "wh", p => [p.wh], [""]],
    ["confidence", "confidence", p => [p.confidence], [""]],
    ["class", "class", p => [p["class"]], [""]],
    ["layers", "per-layer terms (sum)", p => p.layers.map(l => l.xy + l.wh + l.confidence + l["class"]), ["L0", "L1", "L2"]],
    ["iou", "avg IoU per layer", p => p.layers.map(l => l.avg_iou), ["L0", "L1", "L2"]],
    ["recall", "recall50 / recall75 (layer mean)", p => [mean(p.layers, "recall50"), mean(p.layers, "recall75")], ["r50", "r75"]],
    ["obj", "obj / noobj (layer mean)", p => [mean(p.layers, "avg_obj"), mean(p.layers, "avg_noobj")], ["obj", "noobj"]],
  ];
  function mean(layers, k) {
    if (!layers.length) return null;
    let s = 0; for (const l of layers) s += l[k]; return s / layers.length;
  }

  const runs = new Map();     // name -> {points: [], steps: Map(step -> index), color, es, selected}
  let plots = [];
  let dirty = true;
  const logBox = document.getElementById("log");
  const smooth = document.getElementById("smooth");
  const smoothOut = document.getElementById("smooth-value");
  const statusEl = document.getElementById("status");

  function enc(name) { return encodeURIComponent(name); }

  // TensorBoard's smoothing: EMA with debiasing, skipping missing values.
  function ema(values, w) {
    if (!w) return values;
    const out = new Array(values.length);
    let last = 0, n = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v == null || !isFinite(v)) { out[i] = null; continue; }
      last = last * w + (1 - w) * v; n++;
      out[i] = last / (1 - Math.pow(w, n));
    }
    return out;
  }

  function addPoint(run, p) {
    const r = runs.get(run);
    if (!r) return;
    const i = r.steps.get(p.step);
    if (i !== undefined) r.points[i] = p;
    else {
      if (r.points.length && p.step < r.points[r.points.length - 1].step) {
        r.points.push(p); r.points.sort((a, b) => a.step - b.step);
        r.steps = new Map(r.points.map((q, k) => [q.step, k]));
      } else { r.steps.set(p.step, r.points.length); r.points.push(p); }
    }
    dirty = true;
  }

  async function loadSteps(run) {
    let after = -1;
    for (;;) {
      const res = await fetch("/v1/runs/" + enc(run) + "/steps?after=" + after + "&limit=100000");
      if (!res.ok) return;
      const body = await res.json();
      for (const p of body.points) addPoint(run, p);
      if (body.points.length < 100000) return;
      after = body.points[body.points.length - 1].step;
    }
  }

  function listen(run) {
    const r = runs.get(run);
    r.es = new EventSource("/v1/runs/" + enc(run) + "/events");
    r.es.addEventListener("point", ev => addPoint(run, JSON.parse(ev.data)));
  }

  function renderList(list) {
    const ul = document.getElementById("runs");
    for (const info of list) {
      if (runs.has(info.run)) {
        runs.get(info.run).small.textContent = "steps " + info.first_step + "-" + info.last_step + ", loss " + Number(info.last_loss).toPrecision(5);
        continue;
      }
      const r = {points: [], steps: new Map(), color: COLORS[runs.size % COLORS.length], es: null, selected: runs.size < 4};
      runs.set(info.run, r);
      const li = document.createElement("li");
      const box = document.createElement("input");
      box.type = "checkbox"; box.checked = r.selected;
      box.addEventListener("change", () => { r.selected = box.checked; rebuild(); });
      const name = document.createElement("span");
      name.textContent = info.run;
      name.style.color = r.color;
      name.className = "run-name";
      r.small = document.createElement("small");
      r.small.textContent = "steps " + info.first_step + "-" + info.last_step + ", loss " + Number(info.last_loss).toPrecision(5);
      const label = document.createElement("label");
      label.append(box, " ", name);
      li.append(label, r.small);
      ul.append(li);
      loadSteps(info.run).then(() => { listen(info.run); rebuild(); });
    }
  }

  async function refreshRuns() {
    try {
      const res = await fetch("/v1/runs");
      if (!res.ok) { statusEl.textContent = "history: " + res.status; return; }
      renderList((await res.json()).runs);
      statusEl.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) { statusEl.textContent = "offline"; }
  }

  // One uPlot per chart: x = the union of the selected runs' steps, one series per run and
  // value (uPlot.join aligns them, nulls where a run has no point).
  function dataFor(chart) {
    const [, , fn, names] = chart;
    const tables = [], series = [{label: "step"}];
    const w = Number(smooth.value);
    for (const [name, r] of runs) {
      if (!r.selected || !r.points.length) continue;
      const xs = r.points.map(p => p.step);
      const cols = names.map((_, k) => ema(r.points.map(p => { const v = fn(p)[k]; return v === undefined ? null : v; }), w));
      for (let k = 0; k < names.length; k++) {
        if (cols[k].every(v => v == null)) continue;
        tables.push([xs, cols[k]]);
        series.push({label: names[k] ? name + " " + names[k] : name, stroke: r.color,
                     dash: k ? [[], [6, 3], [2, 2]][k % 3] : undefined, spanGaps: true, width: 1.5});
      }
    }
    if (!tables.length) return {data: [[]], series: [{label: "step"}]};
    return {data: uPlot.join(tables), series};
  }

  function rebuild() {
    const box = document.getElementById("charts");
    for (const p of plots) p.plot.destroy();
    plots = [];
    box.textContent = "";
    const log = logBox.checked;
    for (const chart of CHARTS) {
      const div = document.createElement("div");
      div.className = "chart"; div.id = "chart-" + chart[0];
      const h = document.createElement("h3"); h.textContent = chart[1];
      div.append(h);
      box.append(div);
      const {data, series} = dataFor(chart);
      const opts = {width: 460, height: 240, series, scales: {x: {time: false}, y: {distr: log ? 3 : 1}},
                    axes: [{label: "step"}, {}], legend: {live: true}};
      const plot = new uPlot(opts, data, div);
      plots.push({chart, plot, nseries: series.length});
    }
    dirty = false;
    document.body.dataset.points = String(countPoints());
  }

  function countPoints() { let n = 0; for (const r of runs.values()) if (r.selected) n += r.points.length; return n; }

  function update() {
    if (!dirty) return;
    for (const p of plots) {
      const {data, series} = dataFor(p.chart);
      if (series.length !== p.nseries) { rebuild(); return; }
      p.plot.setData(data);
    }
    dirty = false;
    document.body.dataset.points = String(countPoints());
  }

  logBox.addEventListener("change", rebuild);
  smooth.addEventListener("input", () => { smoothOut.textContent = Number(smooth.value).toFixed(2); dirty = true; update(); });
  refreshRuns().then(rebuild);
  setInterval(refreshRuns, 2000);
  setInterval(update, 250);
  window.yololossDashboard = {runs, plots: () => plots};
})();
