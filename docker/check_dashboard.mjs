// make docker-compose-test, the dashboard part: the real dashboard page (GET / through nginx)
// in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core from
// server/monitor/dashboard/node_modules, as tests/server/dashboard.test.mjs), opened before
// any point of the run exists, must come to show every point of the run without a reload,
// whichever replica computed it: the page's one event stream goes through nginx to ONE
// replica, which hears of the other replicas' points through PostgreSQL (NOTIFY/LISTEN).
//
//   node docker/check_dashboard.mjs URL RUN DIR SCREENSHOT
//
// test-compose.sh and this script take turns through files in DIR (no timing involved):
//   ready      written here: the page is loaded, showing no run yet
//   (the script sends the run's first batch)
//   following  written here: the page lists the run, has loaded its points and its event
//              stream is open
//   (the script sends the other batches, 3 clients at once, through nginx)
//   want       written by the script: how many points the run has in all
// Then the page must show all of them (the steps GET /v1/runs/RUN/steps lists), each
// point that came after `following` having come through the page's event stream (Chrome's
// DevTools protocol reports each message the EventSource receives); a reconnect may fill
// a gap from steps?after= instead, which is allowed and reported. Waits are hang guards only.
import { createRequire } from "node:module";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const [base, run, dir, shot] = process.argv.slice(2);
if (!shot) { console.error("usage: check_dashboard.mjs URL RUN DIR SCREENSHOT"); process.exit(2); }
const require = createRequire(new URL("../server/monitor/dashboard/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const GUARD = 300000; // ms: only stops a hang

async function waitFile(name) {
  const path = join(dir, name), t0 = Date.now();
  while (!existsSync(path)) {
    if (Date.now() - t0 > GUARD) throw new Error(`no ${name} from test-compose.sh after ${GUARD / 1000} s`);
    await new Promise(r => setTimeout(r, 100));
  }
  return readFileSync(path, "utf8").trim();
}
// The page's view of the run: the steps it holds and what it shows.
const pageState = (page) => page.evaluate(run => {
  const d = window.yololossDashboard, r = d && d.runs.get(run), s = d && d.stream();
  return {steps: r ? r.points.map(p => p.step) : [], loaded: !!(r && r.loaded),
          shown: document.body.dataset.points, stream: s ? {url: s.url, state: s.readyState} : null};
}, run);

const browser = await chromium.launch({executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                       args: ["--no-sandbox"]});
try {
  const page = await browser.newPage({viewport: {width: 1500, height: 1000}});
  const errors = [], streams = [], navigations = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
  page.on("request", q => { if (q.url().includes("/events")) streams.push(q.url()); });
  page.on("framenavigated", f => { if (f === page.mainFrame()) navigations.push(f.url()); });
  // Every message the page's EventSource receives, from Chrome itself.
  const viaStream = new Set();
  const cdp = await page.context().newCDPSession(page);
  cdp.on("Network.eventSourceMessageReceived", m => {
    if (m.eventName !== "point") return;
    const p = JSON.parse(m.data);
    if (p.run === run) viaStream.add(p.step);
  });
  await cdp.send("Network.enable");

  await page.goto(base + "/");
  await page.waitForFunction(() => window.yololossDashboard && document.body.dataset.points === "0",
                             null, {timeout: GUARD});
  assert.deepEqual((await pageState(page)).steps, [], "the run has points before any batch was sent");
  writeFileSync(join(dir, "ready"), "");

  // The first point: the page finds the run (it polls /v1/runs), loads it, opens its stream.
  await page.waitForFunction(run => {
    const d = window.yololossDashboard, r = d.runs.get(run), s = d.stream();
    return r && r.loaded && r.points.length > 0 && s && s.readyState === 1 &&
           s.url.includes("run=" + encodeURIComponent(run));
  }, run, {timeout: GUARD});
  const before = new Set((await pageState(page)).steps);
  writeFileSync(join(dir, "following"), "");

  const want = Number(await waitFile("want"));
  assert.ok(want > before.size, `want ${want} points`);
  await page.waitForFunction(n => document.body.dataset.points === String(n), want, {timeout: GUARD})
    .catch(async e => { throw new Error(`the page shows ${(await pageState(page)).shown} of ${want} points: ${e.message}`); });

  // The page's points are the run's points, each once.
  const res = await fetch(`${base}/v1/runs/${encodeURIComponent(run)}/steps?limit=100000`);
  assert.equal(res.status, 200);
  const expected = (await res.json()).points.map(p => p.step).sort((a, b) => a - b);
  const st = await pageState(page);
  assert.equal(expected.length, want, "GET .../steps through nginx");
  assert.deepEqual([...st.steps].sort((a, b) => a - b), expected, "the page's steps");
  // Live, not reloaded: one navigation, one stream URL (the page's multiplexed /v1/events).
  assert.deepEqual(navigations, [base + "/"], "the page navigated again");
  assert.ok(streams.length >= 1 && streams.every(u => u.includes("/v1/events?")), streams.join(" "));
  const later = expected.filter(s => !before.has(s));
  const missed = later.filter(s => !viaStream.has(s));
  if (streams.length === 1)
    assert.deepEqual(missed, [], "points that reached the page without coming through its event stream");
  assert.deepEqual(errors, [], "errors in the page");
  await page.screenshot({path: shot, fullPage: true});
  console.log(`${want} points shown live (${before.size} loaded when the run appeared, ` +
              `${later.length - missed.length} of the ${later.length} sent after through the page's event stream` +
              (missed.length ? `, ${missed.length} filled from steps?after= after ${streams.length - 1} reconnects` : "") +
              `), no reload; screenshot ${shot}`);
} finally {
  await browser.close();
}
