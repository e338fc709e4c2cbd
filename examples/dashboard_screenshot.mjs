// The README's pictures from a real training run: node examples/dashboard_screenshot.mjs URL
// DIR. Opens the dashboard of a daemon that training runs have logged to (make
// docs-screenshots starts both), with every run ticked, and saves DIR/dashboard.png (the
// charts) and DIR/dashboard-images.png (the images ranking of the run with damaged labels, and its
// top image's curve).
// playwright-core and Debian's Chromium, as the dashboard's browser test uses them.
import { createRequire } from "node:module";

const require = createRequire(new URL("../server/monitor/dashboard/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const [base, dir] = process.argv.slice(2);
if (!base || !dir) {
  console.error("usage: node examples/dashboard_screenshot.mjs URL DIR");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]});
try {
  const page = await browser.newPage({viewport: {width: 1500, height: 1000}});
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  await page.goto(base + "/");
  await page.waitForSelector("#charts .chart canvas");
  await page.waitForTimeout(1000); // the charts redraw every 250 ms as points stream in
  await page.fill("#smooth", "0.6");
  await page.dispatchEvent("#smooth", "input");
  await page.waitForTimeout(500);
  await page.screenshot({path: `${dir}/dashboard.png`, fullPage: true});
  await page.click("text=images");
  // the run with damaged labels when there is one (its ranking has something to find)
  const runs = await page.$$eval("#img-run option", os => os.map(o => o.value));
  const noisy = runs.find(r => r.includes("noisy"));
  if (noisy) await page.selectOption("#img-run", noisy);
  await page.waitForSelector("#img-table tbody tr");
  await page.waitForTimeout(1000);
  // the top-ranked image's curve beside the table
  await page.click("#img-table tbody tr:first-child td:nth-child(3)");
  await page.waitForTimeout(1000);
  await page.screenshot({path: `${dir}/dashboard-images.png`, fullPage: true});
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log(`dashboard_screenshot: ${dir}/dashboard.png, ${dir}/dashboard-images.png`);
} finally {
  await browser.close();
}
