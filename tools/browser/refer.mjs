// Drives the self-referral form in headless Chromium (Debian's /usr/bin/chromium, through
// playwright-core: no browser is downloaded) as a person referring themselves would — once with
// JavaScript on and once with it off — and checks every page with axe-core.
//
//   node tools/browser/refer.mjs --base http://127.0.0.1:PORT --screenshots target/artefacts/refer
//
// The gateway must offer Sheffield Work and Health Service for self-referral, with Z99901 among
// the GP practices (tests/self_referral.rs starts it so). Prints one JSON line of what it saw
// ({"ok": true, "references": [...]} or {"ok": false, "failures": [...]}) and exits 1 on any
// failure: a console error (a CSP violation is one), an unexpected status, an axe violation of
// WCAG 2.x A/AA, an error not shown at its field and in the summary, or no confirmation.
import { mkdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { launch, watch, axe as runAxe, violations } from "./common.mjs";

const { values: opts } = parseArgs({
  options: {
    base: { type: "string" },
    screenshots: { type: "string", default: "target/artefacts/refer" },
    chromium: { type: "string", default: process.env.WHG_CHROMIUM || "/usr/bin/chromium" },
  },
});
if (!opts.base) {
  console.error("usage: refer.mjs --base URL [--screenshots DIR]");
  process.exit(2);
}
mkdirSync(opts.screenshots, { recursive: true });

const failures = [];
const seen = { pages: [], axeRulesChecked: 0, references: [] };
const fail = (what) => failures.push(what);

const browser = await launch(opts.chromium);

async function person(javaScriptEnabled) {
  const mode = javaScriptEnabled ? "js" : "nojs";
  const context = await browser.newContext({ javaScriptEnabled, viewport: { width: 1024, height: 900 } });
  const page = await context.newPage();
  let expectedStatus = null;
  watch(page, fail, () => expectedStatus, mode);

  // axe-core through the DevTools protocol (the page allows no script of its own, and this is
  // not one). With JavaScript off nothing evaluated can wait on a promise, so the page's HTML,
  // as the person's browser has it, is checked in a page with script on, at the same origin
  // (its stylesheets load as they did).
  async function axe(name) {
    let target = page;
    let scratch = null;
    if (!javaScriptEnabled) {
      scratch = await browser.newContext({ javaScriptEnabled: true, viewport: { width: 1024, height: 900 } });
      target = await scratch.newPage();
      await target.goto(`${opts.base}/refer`);
      await target.setContent(await page.content(), { waitUntil: "load" });
    }
    const result = await runAxe(target);
    seen.axeRulesChecked += result.passes.length;
    for (const v of violations(result, name)) fail(`${mode}: ${v}`);
    if (scratch) await scratch.close();
  }
  async function visit(name) {
    seen.pages.push(`${mode}/${name}`);
    await axe(name);
    await page.screenshot({ path: `${opts.screenshots}/${mode}-${name}.png`, fullPage: true });
  }
  const group = (name) => page.getByRole("group", { name });
  // A form sent sooner than [self_referral] min_fill_secs (1 s here, counted in whole seconds)
  // after it was drawn is drawn again without being read, as one sent by a script would be: a
  // person always takes longer, and so does this one.
  const send = async () => {
    await page.waitForTimeout(1100);
    await page.getByRole("button", { name: "Send my referral" }).click();
  };

  // 1. The start page, and a search by postcode.
  await page.goto(`${opts.base}/refer`);
  await visit("01-start");
  await page.getByLabel("Find services near you by postcode").fill("NE33 1AA");
  await page.getByRole("button", { name: "Find services" }).click();
  await page.getByRole("heading", { name: "Services covering NE33" }).waitFor();
  await visit("02-found");

  // 2. The form, sent empty: every problem in the summary and at its question.
  await page.getByRole("link", { name: "Refer yourself to Sheffield Work and Health Service" }).click();
  await page.getByRole("heading", { name: "Refer yourself" }).waitFor();
  await visit("03-form");
  expectedStatus = 422;
  await send();
  await page.locator(".nhsuk-error-summary").waitFor();
  expectedStatus = null;
  if (!(await page.title()).startsWith("Error:")) fail(`${mode}: an error page's title does not say so`);
  const summary = await page.locator(".nhsuk-error-summary").innerText();
  for (const [field, words] of [
    ["given-name", "Enter your first name"],
    ["dob-day", "Enter your date of birth"],
    ["postcode", "Enter your postcode"],
    ["support", "Select at least one thing"],
    ["consent-service", "Tick the box to agree"],
  ]) {
    if (!summary.includes(words)) fail(`${mode}: the summary does not say "${words}"`);
    const message = page.locator(`#${field}-error`);
    if ((await message.count()) !== 1 || !(await message.innerText()).includes(words)) {
      fail(`${mode}: no error at ${field}`);
    }
    const link = page.locator(`.nhsuk-error-summary a[href="#${field}"]`);
    if ((await link.count()) !== 1) fail(`${mode}: the summary does not link to ${field}`);
  }
  await visit("04-errors");

  // 3. Filled in as a person would, by the labels they read.
  await page.getByLabel("First name").fill("Joanne");
  await page.getByLabel("Last name").fill(`Browser-${mode}`);
  await group("Date of birth").getByLabel("Day").fill("14");
  await group("Date of birth").getByLabel("Month").fill("6");
  await group("Date of birth").getByLabel("Year").fill("1979");
  await group("What is your sex?").getByLabel("Female").check();
  await page.getByLabel("Postcode", { exact: true }).fill("S2 2RL");
  await page.getByLabel("Phone number (optional)").fill("07700 900982");
  await group("How would you like the service to contact you?").getByLabel("Phone call").check();
  await group("Do you need an interpreter?").getByLabel("No").check();
  await page.getByLabel("Your GP practice (optional)").selectOption("Z99901");
  await group("Which of these describes you now?").getByLabel("Off sick", { exact: true }).check();
  await group("If you are off sick, when did it start?").getByLabel("Day").fill("2");
  await group("If you are off sick, when did it start?").getByLabel("Month").fill("11");
  await group("If you are off sick, when did it start?").getByLabel("Year").fill("2026");
  await page.getByLabel(/What kind of health condition/).selectOption("musculoskeletal");
  await group("What would you like help with?").getByLabel("Returning to work after sickness absence").check();
  await page.getByLabel(/I agree that Sheffield Work and Health Service can see my answers/).check();
  await group("Can the service write to your GP practice about the support you get?").getByLabel("Yes").check();
  await group("Can your answers be used, without your name, to improve the service?").getByLabel("No").check();
  await send();

  // 4. The confirmation: the reference, what happens next, how to withdraw.
  await page.getByRole("heading", { name: "Referral sent" }).waitFor();
  const reference = (await page.locator(".nhsuk-panel__body strong").innerText()).trim();
  if (!/^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/.test(reference)) fail(`${mode}: reference ${reference}`);
  // Nothing of the person in the address: the service and the reference only, no query.
  const address = new URL(page.url());
  if (!/^\/refer\/sheffield-whs\/sent\/[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/.test(address.pathname) || address.search !== "") {
    fail(`${mode}: the confirmation's address is not just its reference: ${page.url()}`);
  }
  const text = await page.locator("main").innerText();
  if (!text.includes("within 14 days")) fail(`${mode}: no contact promise`);
  if (!text.includes("withdraw")) fail(`${mode}: no way to withdraw`);
  seen.references.push(reference);
  await visit("05-sent");
  await context.close();
}

try {
  await person(true);
  await person(false);
} catch (e) {
  fail(`stopped: ${e.message.split("\n")[0]}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok: failures.length === 0, failures, ...seen }));
process.exit(failures.length === 0 ? 0 : 1);
