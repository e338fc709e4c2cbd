// The yololossd dashboard: runs from /v1/runs, their points from /v1/runs/{run}/steps,
// new points from one /v1/events?run=..&run=.. stream for all of them (Server-Sent
// Events), the scalars a training loop logged from /v1/runs/{run}/scalars, the images ranking from /v1/runs/{run}/images,
// the streamed evaluations from /v1/runs/{run}/evals (which steps) and /v1/runs/{run}/eval?step= (each one's stats). Charts
// are uPlot's. Everything that comes from the daemon (run names, configuration keys and
// values, image links) is only ever set with textContent, as an attribute value or as a
// uPlot series label (text), never as HTML.
"use strict";
(function () {
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  // The charts of the points: {id, title, fn(point) -> [values...], names of those values}
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
  ].map(([id, title, fn, names]) => ({id, title, names, rows: r => pointRows(r, fn, names.length)}));
  function mean(layers, k) {
    if (!layers.length) return null;
    let s = 0; for (const l of layers) s += l[k]; return s / layers.length;
  }

  // name -> {points: [], steps: Map(step -> index), color, loaded, selected, config, scalars}
  const runs = new Map();
  let plots = [];
  let dirty = true;
  let enlarged = null;     // id of the enlarged chart
  let scalarNames = "";    // the scalar charts drawn, to know when to rebuild
  const logBox = document.getElementById("log");
  const smooth = document.getElementById("smooth");
  const smoothOut = document.getElementById("smooth-value");
  const xaxis = document.getElementById("xaxis");
  const statusEl = document.getElementById("status");

  function enc(name) { return encodeURIComponent(name); }
  function byWall() { return xaxis.value === "wall"; }
  // y tick labels: 3 significant digits, exponents for the very small or large (uPlot's own
  // labels repeat "0.001" on a log axis of learning rates)
  function tick(v) {
    if (v == null) return "";
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(1) : String(Number(v.toPrecision(3)));
  }
  const yAxis = {size: 60, values: (u, vals) => vals.map(tick)};
  function fmt(v, digits) { return v == null || !isFinite(v) ? "" : Number(v).toPrecision(digits || 5); }

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

  // x and the value columns of a run for a point chart (x: step or wall time).
  function pointRows(r, fn, k) {
    const xs = r.points.map(p => byWall() ? p.wall : p.step);
    const cols = [];
    for (let j = 0; j < k; j++) cols.push(r.points.map(p => { const v = fn(p)[j]; return v === undefined ? null : v; }));
    return {xs, cols};
  }

  function scalarChart(name) {
    return {id: "scalar-" + name, title: name + " (logged)", names: [""], scalar: true, rows: r => {
      const s = r.scalars && r.scalars[name];
      if (!s) return {xs: [], cols: [[]]};
      return {xs: byWall() ? s.walls : s.steps, cols: [s.values]};
    }};
  }

  // COCO AP, AP50, AP75 (summarize()'s stats 0, 1, 2) at each evaluated step; against wall
  // time, a step's x is the wall time of the run's point at that step (none: left out).
  const EVAL_CHART = {id: "eval", title: "COCO AP / AP50 / AP75 (evaluations)", names: ["AP", "AP50", "AP75"],
                      scalar: true, raw: true, rows: r => {
    const steps = r.evals ? [...r.evals.results.keys()].sort((a, b) => a - b) : [];
    const xs = steps.map(s => { if (!byWall()) return s; const i = r.steps.get(s); return i === undefined ? null : r.points[i].wall; });
    const keep = steps.map((s, i) => i).filter(i => xs[i] != null);
    return {xs: keep.map(i => xs[i]),
            cols: [0, 1, 2].map(k => keep.map(i => { const v = r.evals.results.get(steps[i]).stats[k]; return v == null || v < 0 ? null : v; }))};
  }};
  function hasEvals(r) { return r.selected && r.evals && r.evals.results.size > 0; }

  function charts() {
    const names = new Set();
    for (const r of runs.values())
      if (r.selected && r.scalars) for (const n of Object.keys(r.scalars)) names.add(n);
    const evals = [...runs.values()].some(hasEvals) ? [EVAL_CHART] : [];
    return CHARTS.slice(0, 1).concat(evals, CHARTS.slice(1), [...names].sort().map(scalarChart));
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

  // The points of run after step `after` (all of them: pages of 100000).
  async function loadSteps(run, after = -1) {
    for (;;) {
      const res = await fetch("/v1/runs/" + enc(run) + "/steps?after=" + after + "&limit=100000");
      if (!res.ok) return;
      const body = await res.json();
      for (const p of body.points) addPoint(run, p);
      if (body.points.length < 100000) return;
      after = body.points[body.points.length - 1].step;
    }
  }

  // ONE event stream for every run of the page (a browser allows few connections per
  // server). It is reopened when runs appear; the browser reconnects it by itself after a
  // network error, sending Last-Event-ID, from which the daemon replays what was missed.
  // Every (re)open also fetches each run's points after its last one, so a gap (a run
  // added, a daemon restarted) fills in; a point that comes twice replaces itself.
  const STREAM_RUNS = 64; // the daemon's limit per stream
  let stream = null, streamKey = "";
  function follow() {
    const names = [...runs.keys()].filter(n => runs.get(n).loaded).slice(0, STREAM_RUNS);
    const key = names.join("\n");
    if (stream && key === streamKey) return;
    if (stream) stream.close();
    stream = null; streamKey = key;
    if (!names.length) return;
    stream = new EventSource("/v1/events?" + names.map(n => "run=" + enc(n)).join("&"));
    stream.addEventListener("point", ev => { const p = JSON.parse(ev.data); addPoint(p.run, p); });
    stream.addEventListener("open", () => {
      for (const n of names) {
        const r = runs.get(n);
        if (r) loadSteps(n, r.points.length ? r.points[r.points.length - 1].step : -1);
      }
    });
  }

  async function loadScalars(run) {
    try {
      const res = await fetch("/v1/runs/" + enc(run) + "/scalars");
      if (!res.ok) return;
      const s = (await res.json()).scalars;
      const r = runs.get(run);
      if (r && JSON.stringify(s) !== JSON.stringify(r.scalars)) { r.scalars = s; dirty = true; }
    } catch (e) { /* the next refresh tries again */ }
  }

  // The run's evaluated steps, and the result of each new one or of one whose image count
  // changed (more batches came). The latest EVAL_STEPS steps only: each result is an
  // accumulation on the daemon.
  const EVAL_STEPS = 200;
  async function loadEvals(run) {
    try {
      const res = await fetch("/v1/runs/" + enc(run) + "/evals");
      if (!res.ok) return;
      const list = (await res.json()).steps.slice(-EVAL_STEPS);
      const r = runs.get(run);
      if (!r) return;
      if (!r.evals) r.evals = {images: new Map(), results: new Map()};
      let changed = false;
      for (const e of list) {
        if (r.evals.images.get(e.step) === e.images) continue;
        const q = await fetch("/v1/runs/" + enc(run) + "/eval?step=" + e.step);
        if (!q.ok) continue;
        r.evals.results.set(e.step, await q.json());
        r.evals.images.set(e.step, e.images);
        changed = true;
      }
      if (changed) { dirty = true; renderEvalChoices(); }
    } catch (e) { /* the next refresh tries again */ }
  }

  // The per-class table: one run's step, its classes sorted by the clicked column.
  const ev = {run: document.getElementById("eval-run"), step: document.getElementById("eval-step"),
              body: document.querySelector("#eval-table tbody"), summary: document.getElementById("eval-summary"),
              sortKey: "class", sortDir: 1};
  function renderEvalChoices() {
    const names = [...runs].filter(([, r]) => hasEvals(r)).map(([n]) => n);
    document.getElementById("eval-box").hidden = names.length === 0;
    if ([...ev.run.options].map(o => o.value).join("\n") !== names.join("\n")) {
      const keep = ev.run.value;
      ev.run.textContent = "";
      for (const n of names) { const o = document.createElement("option"); o.value = n; o.textContent = n; ev.run.append(o); }
      if (names.includes(keep)) ev.run.value = keep;
    }
    const r = runs.get(ev.run.value);
    const steps = r && r.evals ? [...r.evals.results.keys()].sort((a, b) => a - b) : [];
    if ([...ev.step.options].map(o => o.value).join(",") !== steps.join(",")) {
      const keep = ev.step.value, latest = keep === "" || keep === ev.step.options[ev.step.options.length - 1]?.value;
      ev.step.textContent = "";
      for (const s of steps) { const o = document.createElement("option"); o.value = String(s); o.textContent = String(s); ev.step.append(o); }
      // follow the newest step unless another was picked
      if (steps.length) ev.step.value = !latest && steps.includes(Number(keep)) ? keep : String(steps[steps.length - 1]);
    }
    renderEvalTable();
  }
  function renderEvalTable() {
    const r = runs.get(ev.run.value);
    const res = r && r.evals ? r.evals.results.get(Number(ev.step.value)) : undefined;
    ev.body.textContent = "";
    for (const th of document.querySelectorAll("#eval-table th"))
      th.className = "sortable" + (th.dataset.key === ev.sortKey ? (ev.sortDir > 0 ? " asc" : " desc") : "");
    if (!res) { ev.summary.textContent = ""; return; }
    ev.summary.textContent = res.images + " images, " + res.classes + " classes; AP " + fmt(res.stats[0], 4) +
      ", AP50 " + fmt(res.stats[1], 4) + ", AP75 " + fmt(res.stats[2], 4);
    const key = ev.sortKey, dir = ev.sortDir;
    // null (not finite) below every number; ties by class, so the order is stable
    const val = o => o[key] == null ? -Infinity : o[key];
    const rows = res.per_class.filter(o => o).slice().sort((a, b) => (val(a) - val(b)) * dir || a["class"] - b["class"]);
    for (const o of rows) {
      const tr = ev.body.insertRow();
      tr.dataset["class"] = String(o["class"]);
      for (const v of [o["class"], fmt(o.ap, 4), fmt(o.ap50, 4)]) tr.insertCell().textContent = String(v);
    }
    document.body.dataset.evalRows = String(rows.length);
  }
  for (const th of document.querySelectorAll("#eval-table th.sortable"))
    th.addEventListener("click", () => {
      if (ev.sortKey === th.dataset.key) ev.sortDir = -ev.sortDir;
      else { ev.sortKey = th.dataset.key; ev.sortDir = th.dataset.key === "class" ? 1 : -1; }
      renderEvalTable();
    });
  ev.run.addEventListener("change", renderEvalChoices);
  ev.step.addEventListener("change", renderEvalTable);

  function runSummary(info) {
    return "steps " + info.first_step + "-" + info.last_step + ", loss " + Number(info.last_loss).toPrecision(5);
  }

  function renderList(list) {
    const ul = document.getElementById("runs");
    let configChanged = false;
    for (const info of list) {
      const cfg = info.config === undefined ? null : info.config;
      if (runs.has(info.run)) {
        const r = runs.get(info.run);
        r.small.textContent = runSummary(info);
        if (JSON.stringify(cfg) !== JSON.stringify(r.config)) { r.config = cfg; configChanged = true; }
        continue;
      }
      const r = {points: [], steps: new Map(), color: COLORS[runs.size % COLORS.length], loaded: false,
                 selected: runs.size < 4, config: cfg, scalars: null, evals: null};
      runs.set(info.run, r);
      configChanged = true;
      const li = document.createElement("li");
      const box = document.createElement("input");
      box.type = "checkbox"; box.checked = r.selected;
      box.addEventListener("change", () => { r.selected = box.checked; rebuild(); renderConfig(); renderEvalChoices(); });
      const name = document.createElement("span");
      name.textContent = info.run;
      name.style.color = r.color;
      name.className = "run-name";
      r.small = document.createElement("small");
      r.small.textContent = runSummary(info);
      const label = document.createElement("label");
      label.append(box, " ", name);
      li.append(label, r.small);
      ul.append(li);
      const opt = document.createElement("option");
      opt.value = info.run; opt.textContent = info.run;
      document.getElementById("img-run").append(opt);
      loadSteps(info.run).then(() => { r.loaded = true; follow(); rebuild(); });
    }
    if (configChanged) renderConfig();
  }

  async function refreshRuns() {
    try {
      const res = await fetch("/v1/runs");
      if (!res.ok) { statusEl.textContent = "history: " + res.status; return; }
      renderList((await res.json()).runs);
      await Promise.all([...runs].filter(([, r]) => r.selected).map(([name]) => Promise.all([loadScalars(name), loadEvals(name)])));
      statusEl.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) { statusEl.textContent = "offline"; }
  }

  // The configurations of the selected runs side by side: one row per key, one column per
  // run; a row whose values differ between runs is marked.
  function renderConfig() {
    const table = document.getElementById("config");
    table.textContent = "";
    const cols = [...runs].filter(([, r]) => r.selected && r.config && typeof r.config === "object");
    document.getElementById("config-empty").hidden = cols.length > 0;
    if (!cols.length) return;
    const keys = [];
    for (const [, r] of cols) for (const k of Object.keys(r.config)) if (!keys.includes(k)) keys.push(k);
    const head = table.createTHead().insertRow();
    const th0 = document.createElement("th"); th0.textContent = "parameter"; head.append(th0);
    for (const [name, r] of cols) {
      const th = document.createElement("th"); th.textContent = name; th.style.color = r.color; head.append(th);
    }
    const body = table.createTBody();
    for (const k of keys) {
      const tr = body.insertRow();
      const vals = cols.map(([, r]) => k in r.config ? (typeof r.config[k] === "string" ? r.config[k] : JSON.stringify(r.config[k])) : "");
      if (new Set(vals).size > 1) tr.className = "differs";
      const td0 = tr.insertCell(); td0.textContent = k;
      for (const v of vals) tr.insertCell().textContent = v;
    }
  }

  // One uPlot per chart: x = the union of the selected runs' x values, one series per run
  // and value (uPlot.join aligns them, nulls where a run has no point).
  function dataFor(chart) {
    const tables = [], series = [{label: byWall() ? "time" : "step"}];
    const w = Number(smooth.value);
    for (const [name, r] of runs) {
      if (!r.selected || (!chart.scalar && !r.points.length)) continue;
      const {xs, cols} = chart.rows(r);
      if (!xs.length) continue;
      for (let k = 0; k < chart.names.length; k++) {
        const col = chart.raw ? cols[k] : ema(cols[k], w); // AP is not smoothed
        if (col.every(v => v == null)) continue;
        tables.push([xs, col]);
        series.push({label: chart.names[k] ? name + " " + chart.names[k] : name, stroke: r.color,
                     dash: k ? [[], [6, 3], [2, 2]][k % 3] : undefined, spanGaps: true, width: 1.5});
      }
    }
    if (!tables.length) return {data: [[]], series: [series[0]]};
    return {data: uPlot.join(tables), series};
  }

  // CSV: text fields quoted, quotes doubled, a leading = + - @ defused for spreadsheets.
  function csvField(v) {
    if (v == null) return "";
    if (typeof v === "number") return isFinite(v) ? String(v) : "";
    let s = String(v);
    if (/^[=+\-@]/.test(s)) s = "'" + s;
    return '"' + s.replace(/"/g, '""') + '"';
  }
  function download(filename, header, rows) {
    const text = [header, ...rows].map(r => r.map(csvField).join(",")).join("\r\n") + "\r\n";
    const url = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
    const a = document.createElement("a");
    a.href = url; a.download = filename;
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  // What a chart shows (smoothing included), as CSV: x, then one column per series.
  function chartCSV(p) {
    const d = p.plot.data, s = p.plot.series;
    const header = s.map((x, i) => i === 0 ? (byWall() ? "wall" : "step") : x.label);
    const rows = d[0].map((x, i) => d.map(col => col[i]));
    download(p.chart.id + ".csv", header, rows);
  }

  function rebuild() {
    const box = document.getElementById("charts");
    for (const p of plots) p.plot.destroy();
    plots = [];
    box.textContent = "";
    const log = logBox.checked, wall = byWall();
    const list = charts();
    scalarNames = list.filter(c => c.scalar).map(c => c.id).join("\n");
    if (enlarged && !list.some(c => c.id === enlarged)) enlarged = null;
    for (const chart of list) {
      const big = chart.id === enlarged;
      const div = document.createElement("div");
      div.className = big ? "chart big" : "chart"; div.id = "chart-" + chart.id;
      const bar = document.createElement("div"); bar.className = "bar";
      const h = document.createElement("h3"); h.textContent = chart.title;
      const grow = document.createElement("button");
      grow.type = "button"; grow.className = "enlarge"; grow.textContent = big ? "shrink" : "enlarge";
      grow.addEventListener("click", () => { enlarged = big ? null : chart.id; rebuild(); });
      const csv = document.createElement("button");
      csv.type = "button"; csv.className = "csv"; csv.textContent = "CSV";
      bar.append(h, grow, csv);
      div.append(bar);
      if (big) box.prepend(div); else box.append(div);
      const {data, series} = dataFor(chart);
      const opts = {width: big ? 1100 : 460, height: big ? 520 : 240, series,
                    scales: {x: {time: wall}, y: {distr: log ? 3 : 1}},
                    axes: [{label: wall ? "wall time" : "step"}, yAxis], legend: {live: true}};
      const entry = {chart, plot: new uPlot(opts, data, div), nseries: series.length};
      csv.addEventListener("click", () => chartCSV(entry));
      plots.push(entry);
    }
    dirty = false;
    document.body.dataset.points = String(countPoints());
  }

  function countPoints() { let n = 0; for (const r of runs.values()) if (r.selected) n += r.points.length; return n; }

  function update() {
    if (!dirty) return;
    if (charts().filter(c => c.scalar).map(c => c.id).join("\n") !== scalarNames) { rebuild(); return; }
    for (const p of plots) {
      const {data, series} = dataFor(p.chart);
      if (series.length !== p.nseries) { rebuild(); return; }
      p.plot.setData(data);
    }
    dirty = false;
    document.body.dataset.points = String(countPoints());
  }

  // ---------------------------------------------------------------------------------
  // The images view: the ranking of one run, and one image's curve.

  const img = {
    run: document.getElementById("img-run"), order: document.getElementById("img-order"),
    per: document.getElementById("img-per"),
    window: document.getElementById("img-window"), limit: document.getElementById("img-limit"),
    body: document.querySelector("#img-table tbody"), summary: document.getElementById("img-summary"),
    last: null, curve: null, curveId: null,
  };

  // A link only when it is a web address (the daemon's --image-url is checked too).
  function safeUrl(u) { return typeof u === "string" && /^(https?:\/\/|\/)/i.test(u) ? u : null; }

  async function loadRanking() {
    const run = img.run.value;
    if (!run) return;
    const q = "?order=" + enc(img.order.value) + "&per=" + enc(img.per.value) + "&window=" + enc(img.window.value) +
      "&limit=" + enc(img.limit.value);
    let body;
    try {
      const res = await fetch("/v1/runs/" + enc(run) + "/images" + q);
      body = await res.json();
      if (!res.ok) { img.summary.textContent = body.error || String(res.status); return; }
    } catch (e) { img.summary.textContent = "offline"; return; }
    if (run !== img.run.value) return; // changed meanwhile
    img.last = body;
    img.summary.textContent = body.images_total + " images, " + body.rows + " rows; ranked by " + body.order +
      " per " + body.per + " over the last " + body.window + " appearances";
    img.body.textContent = "";
    for (const o of body.images) {
      const tr = img.body.insertRow();
      tr.dataset.image = String(o.image);
      if (String(o.image) === img.curveId) tr.className = "picked";
      for (const v of [o.rank, o.image, fmt(o.score, 4), o.appearances, o.last_step, fmt(o.last_value), fmt(o.mean_value)])
        tr.insertCell().textContent = String(v);
      const td = tr.insertCell();
      const url = safeUrl(o.url);
      if (url) {
        const a = document.createElement("a");
        a.href = url; a.target = "_blank"; a.rel = "noopener noreferrer"; a.textContent = "open";
        a.addEventListener("click", ev => ev.stopPropagation());
        td.append(a);
      }
      tr.addEventListener("click", () => loadCurve(run, String(o.image)));
    }
    document.body.dataset.images = String(body.images.length);
  }

  // The image's relative loss (left axis) and its loss (right axis) at each appearance.
  async function loadCurve(run, id) {
    const res = await fetch("/v1/runs/" + enc(run) + "/images/" + enc(id) + "?per=" + enc(img.per.value));
    if (!res.ok) return;
    const h = (await res.json()).history;
    img.curveId = id;
    for (const tr of img.body.rows) tr.className = tr.dataset.image === id ? "picked" : "";
    const r = runs.get(run);
    const wall = byWall();
    const xs = h.map(o => {
      if (!wall) return o.step;
      const i = r ? r.steps.get(o.step) : undefined;
      return i === undefined ? null : r.points[i].wall;
    });
    const keep = xs.map((x, i) => x == null ? -1 : i).filter(i => i >= 0);
    const data = [keep.map(i => xs[i]), keep.map(i => h[i].relative), keep.map(i => h[i].loss)];
    const box = document.getElementById("img-chart");
    document.getElementById("img-chart-title").textContent = "image " + id + " in " + run;
    if (img.curve) img.curve.destroy();
    img.curve = new uPlot({
      width: 560, height: 300,
      series: [{label: wall ? "time" : "step"},
               {label: "relative to its batch", stroke: "#d62728", width: 2, scale: "rel", points: {show: true}},
               {label: "loss", stroke: "#1f77b4", width: 1, scale: "loss", points: {show: true}}],
      scales: {x: {time: wall}, rel: {}, loss: {}},
      axes: [{label: wall ? "wall time" : "step"}, {scale: "rel", label: "relative", values: yAxis.values},
             {scale: "loss", side: 1, label: "loss", grid: {show: false}, values: yAxis.values}],
    }, data, box);
    box.dataset.points = String(data[0].length);
    document.body.dataset.imageCurve = id;
  }

  function rankingCSV() {
    if (!img.last) return;
    const header = ["rank", "image", "score", "appearances", "used", "last_step", "last_value", "mean_value",
                    "last_truths", "url"];
    download("images-" + img.last.run + ".csv", header,
             img.last.images.map(o => header.map(k => o[k])));
  }

  function showView(view) {
    document.body.dataset.view = view;
    document.getElementById("charts-view").hidden = view !== "charts";
    document.getElementById("images-view").hidden = view !== "images";
    document.getElementById("tab-charts").classList.toggle("active", view === "charts");
    document.getElementById("tab-images").classList.toggle("active", view === "images");
    if (view === "images") loadRanking();
  }

  document.getElementById("tab-charts").addEventListener("click", () => showView("charts"));
  document.getElementById("tab-images").addEventListener("click", () => showView("images"));
  for (const el of [img.run, img.order, img.per, img.window, img.limit]) el.addEventListener("change", loadRanking);
  document.getElementById("img-refresh").addEventListener("click", loadRanking);
  document.getElementById("img-csv").addEventListener("click", rankingCSV);
  setInterval(() => { if (document.body.dataset.view === "images") loadRanking(); }, 5000);

  logBox.addEventListener("change", rebuild);
  xaxis.addEventListener("change", () => {
    rebuild();
    if (img.curveId && img.run.value) loadCurve(img.run.value, img.curveId);
  });
  smooth.addEventListener("input", () => { smoothOut.textContent = Number(smooth.value).toFixed(2); dirty = true; update(); });
  refreshRuns().then(rebuild);
  setInterval(refreshRuns, 2000);
  setInterval(update, 250);
  window.yololossDashboard = {runs, plots: () => plots, imageCurve: () => img.curve, evalChart: EVAL_CHART,
                              stream: () => stream};
})();
