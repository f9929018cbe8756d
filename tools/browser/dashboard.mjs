// Drives the dashboard in headless Chromium (Debian's /usr/bin/chromium, through playwright-core:
// no browser is downloaded) as a commissioner would, then the alerts page as the on-call person
// would, and checks every page with axe-core.
//
//   node tools/browser/dashboard.mjs --base http://127.0.0.1:PORT --account "Commissioner at QF7" \
//        --screenshots target/artefacts/dashboard
//
// The gateway must be signed-in-able at a `whg dev-issuer`. Prints one JSON line of what it saw
// ({"ok": true, ...} or {"ok": false, "failures": [...]}) and exits 1 on any failure: a console
// error (a CSP violation is one), a failed request, an axe violation of WCAG 2.x A/AA, a chart
// missing, or figures that a filter did not change.
import { mkdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { launch, watch, axe as runAxe, violations } from "./common.mjs";

const { values: opts } = parseArgs({
  options: {
    base: { type: "string" },
    account: { type: "string", default: "Commissioner at QF7" },
    "ops-account": { type: "string", default: "On call for the gateway (operations: the alerts page)" },
    screenshots: { type: "string", default: "target/artefacts/dashboard" },
    chromium: { type: "string", default: process.env.WHG_CHROMIUM || "/usr/bin/chromium" },
  },
});
if (!opts.base) {
  console.error("usage: dashboard.mjs --base URL [--account LABEL] [--screenshots DIR]");
  process.exit(2);
}
mkdirSync(opts.screenshots, { recursive: true });

const failures = [];
const seen = { pages: [], charts: 0, axeRulesChecked: 0 };
const fail = (what) => failures.push(what);

const browser = await launch(opts.chromium);
try {
  const context = await browser.newContext({ javaScriptEnabled: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // A status the page is expected to answer with next (a form with an error: 400).
  let expectedStatus = null;
  watch(page, fail, () => expectedStatus);

  // axe-core, evaluated through the DevTools protocol (the page's CSP allows no script of its
  // own, and this is not one), over WCAG 2.0-2.2 A and AA.
  async function axe(name) {
    const result = await runAxe(page);
    seen.axeRulesChecked += result.passes.length;
    for (const v of violations(result, name)) fail(v);
  }
  async function visit(name) {
    seen.pages.push(name);
    await axe(name);
    await page.screenshot({ path: `${opts.screenshots}/${name}.png`, fullPage: true });
  }
  async function charts(name, atLeast) {
    const n = await page.locator("svg.whg-chart[role=img]").count();
    seen.charts += n;
    if (n < atLeast) fail(`${name}: ${n} charts, expected ${atLeast}`);
    for (let i = 0; i < n; i++) {
      const svg = page.locator("svg.whg-chart").nth(i);
      const box = await svg.boundingBox();
      if (!box || box.width < 200 || box.height < 50) fail(`${name}: chart ${i} is not drawn (${JSON.stringify(box)})`);
      const label = await svg.getAttribute("aria-labelledby");
      if (!label) fail(`${name}: chart ${i} has no accessible name`);
    }
  }
  // The first figures table's totals row, as text: what the filters must change.
  const totals = async () =>
    (await page.locator("table.whg-figures").first().locator("tr").last().innerText()).replace(/\s+/g, " ");

  // 1. The front door, then the sign-in at the development issuer.
  await page.goto(`${opts.base}/dashboard`);
  if (!(await page.getByRole("link", { name: "Sign in" }).isVisible())) fail("landing: no Sign in button");
  await visit("01-landing");
  await page.getByRole("link", { name: "Sign in" }).click();
  await page.getByRole("button", { name: opts.account }).click();
  await page.waitForURL(`${opts.base}/dashboard`);

  // 2. The overview: five charts, each with its table and CSV link.
  const heading = await page.locator("h1").innerText();
  if (heading !== "Referrals and outcomes") fail(`overview: heading ${heading}`);
  await charts("overview", 5);
  const tables = await page.locator("table.whg-figures").count();
  if (tables < 5) fail(`overview: ${tables} tables`);
  await visit("02-overview");
  const unfiltered = await totals();

  // 3. The filters change the figures: a period with none of the fixtures' referrals in it.
  await page.getByLabel("From (month)").fill("2026-05");
  await page.getByLabel("To (month)").fill("2026-05");
  await page.getByRole("button", { name: "Show figures" }).click();
  await page.waitForURL(/from=2026-05/);
  const filtered = await totals();
  if (filtered === unfiltered) fail(`filters: the figures did not change (${filtered})`);
  const covering = await page.locator("main p.nhsuk-body").first().innerText();
  if (!covering.includes("1 May 2026")) fail(`filters: the period is not stated (${covering})`);
  await visit("03-filtered");

  // 4. A filter that is wrong: the error summary, and the error at its field.
  await page.getByLabel("Place", { exact: true }).fill("S1 1AA!");
  expectedStatus = 400;
  await page.getByRole("button", { name: "Show figures" }).click();
  await page.waitForSelector(".nhsuk-error-summary");
  expectedStatus = null;
  const summary = await page.locator(".nhsuk-error-summary").innerText();
  if (!summary.includes("postcode district")) fail(`error summary: ${summary}`);
  if ((await page.locator("#place-error").count()) !== 1) fail("the place field has no error message");
  if (!(await page.title()).startsWith("Error:")) fail("an error page's title does not say so");
  await visit("04-filter-error");

  // 5. One report on its own, and its CSV.
  await page.getByRole("link", { name: "Clear the filters" }).click();
  await page.getByRole("link", { name: /See this report on its own.*Time from referral to first contact/ }).click();
  await charts("report", 1);
  await visit("05-report");
  const csvHref = await page.getByRole("link", { name: /Download these figures as CSV/ }).getAttribute("href");
  const csv = await page.request.get(`${opts.base}${csvHref}`);
  if (csv.status() !== 200 || !csv.headers()["content-type"].startsWith("text/csv")) fail(`CSV: ${csv.status()} ${csv.headers()["content-type"]}`);
  if (!(await csv.text()).startsWith("code,")) fail("CSV: no header row");

  // 6. Sign out: the session is gone.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${opts.base}/dashboard/signed-out`);
  await visit("06-signed-out");
  await page.goto(`${opts.base}/dashboard`);
  if (!(await page.getByRole("link", { name: "Sign in" }).isVisible())) fail("after sign-out: still signed in");

  // 7. On call: the alerts page (the gateway's MESH mailbox is unusable in this run, so there
  //    is one), an alert acknowledged, the page after.
  await page.getByRole("link", { name: "Sign in" }).click();
  await page.getByRole("button", { name: opts["ops-account"] }).click();
  await page.waitForURL(`${opts.base}/dashboard/ops`);
  if ((await page.locator("h1").innerText()) !== "Alerts") fail("operations: not the alerts page");
  const open = await page.getByRole("button", { name: /^Acknowledge/ }).count();
  if (open < 1) fail(`operations: ${open} open alerts`);
  await visit("07-alerts");
  await page.getByRole("button", { name: /^Acknowledge/ }).first().click();
  await page.waitForURL(/done=acknowledged/);
  if (!(await page.locator(".nhsuk-inset-text").innerText()).includes("acknowledged")) fail("operations: no notice of the acknowledgement");
  if ((await page.getByRole("button", { name: /^Acknowledge/ }).count()) !== open - 1) fail("operations: the acknowledged alert is still open");
  await visit("08-alert-acknowledged");
  seen.alertsAcknowledged = 1;
} catch (e) {
  fail(`stopped: ${e.message.split("\n")[0]}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok: failures.length === 0, failures, ...seen }));
process.exit(failures.length === 0 ? 0 : 1);
