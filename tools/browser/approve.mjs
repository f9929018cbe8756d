// Drives the one-time link on which a person approves a letter to their employer, in headless
// Chromium (Debian's, through playwright-core), once with JavaScript on and once with it off, and
// checks every page with axe-core (WCAG 2.0–2.2 A/AA).
//
//   node tools/browser/approve.mjs --links '[{"url": "...", "code": "123456"}, {...}]' \
//     --birth 14-6-1979 --screenshots target/artefacts/approve
//
// Each link is a fresh letter's (a link is spent once answered): the first is answered with
// JavaScript on, the second with it off. On each: the first page, wrong details (shown at the
// field and in the error summary), the letter, no answer chosen (the same), yes, and the
// confirmation. Prints one JSON line ({"ok": true, ...} or {"ok": false, "failures": [...]})
// and exits 1 on any failure.
import { mkdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { launch, watch, axe as runAxe, violations } from "./common.mjs";

const { values: opts } = parseArgs({
  options: {
    links: { type: "string" },
    birth: { type: "string" },
    screenshots: { type: "string", default: "target/artefacts/approve" },
    chromium: { type: "string", default: process.env.WHG_CHROMIUM || "/usr/bin/chromium" },
  },
});
if (!opts.links || !opts.birth) {
  console.error("usage: approve.mjs --links JSON --birth D-M-YYYY [--screenshots DIR]");
  process.exit(2);
}
mkdirSync(opts.screenshots, { recursive: true });
const links = JSON.parse(opts.links);
const [day, month, year] = opts.birth.split("-");

const failures = [];
const seen = { pages: [], axeRulesChecked: 0, answered: 0 };
const fail = (what) => failures.push(what);
const browser = await launch(opts.chromium);

async function person({ url, code }, javaScriptEnabled) {
  const mode = javaScriptEnabled ? "js" : "nojs";
  const origin = new URL(url).origin;
  const context = await browser.newContext({ javaScriptEnabled, viewport: { width: 1024, height: 900 } });
  const page = await context.newPage();
  let expectedStatus = null;
  watch(page, fail, () => expectedStatus, mode);

  // As refer.mjs: with JavaScript off, the page's HTML is checked in a page with script on, at
  // the same origin.
  async function visit(name) {
    seen.pages.push(`${mode}/${name}`);
    let target = page;
    let scratch = null;
    if (!javaScriptEnabled) {
      scratch = await browser.newContext({ javaScriptEnabled: true, viewport: { width: 1024, height: 900 } });
      target = await scratch.newPage();
      await target.goto(`${origin}/refer`);
      await target.setContent(await page.content(), { waitUntil: "load" });
    }
    const result = await runAxe(target);
    seen.axeRulesChecked += result.passes.length;
    for (const v of violations(result, name)) fail(`${mode}: ${v}`);
    if (scratch) await scratch.close();
    await page.screenshot({ path: `${opts.screenshots}/${mode}-${name}.png`, fullPage: true });
  }
  const summaryLinks = async () => page.locator(".nhsuk-error-summary a").allTextContents();

  await page.goto(url);
  await page.getByRole("heading", { name: "Check a letter to your employer" }).waitFor();
  await visit("01-who");
  const group = page.getByRole("group", { name: "What is your date of birth?" });

  // Wrong details: the problem in the summary and at the field; nothing of the letter.
  expectedStatus = 422;
  await group.getByLabel("Day").fill(day);
  await group.getByLabel("Month").fill(month);
  await group.getByLabel("Year").fill(year);
  await page.getByLabel("Your code").fill(code === "000000" ? "111111" : "000000");
  await page.getByRole("button", { name: "Continue" }).click();
  await page.locator(".nhsuk-error-summary").waitFor();
  if (!(await summaryLinks()).some((t) => t.includes("does not match"))) fail(`${mode}: wrong details not in the summary`);
  if ((await page.locator(".nhsuk-error-message").count()) < 1) fail(`${mode}: wrong details not at the field`);
  if ((await page.content()).includes("Return-to-work plan from")) fail(`${mode}: the letter shown without the details`);
  await visit("02-wrong-details");

  // The right ones: the letter.
  expectedStatus = null;
  await page.getByLabel("Your code").fill(code);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByRole("heading", { name: "Do you agree to this letter being sent to your employer?" }).waitFor();
  await visit("03-letter");

  // No answer chosen: asked at the field, the letter still shown.
  expectedStatus = 422;
  await page.getByRole("button", { name: "Send my answer" }).click();
  await page.locator(".nhsuk-error-summary").waitFor();
  await visit("04-no-answer");

  // Yes.
  expectedStatus = null;
  await page.getByLabel("Yes, send this letter to my employer").check();
  await page.getByRole("button", { name: "Send my answer" }).click();
  await page.getByRole("heading", { name: "Thank you" }).waitFor();
  if (!(await page.content()).includes("You agreed to the letter being sent")) fail(`${mode}: no confirmation`);
  await visit("05-answered");
  seen.answered += 1;
  await context.close();
}

try {
  await person(links[0], true);
  await person(links[1], false);
} catch (e) {
  fail(`stopped: ${e.message.split("\n")[0]}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok: failures.length === 0, failures, ...seen }));
process.exit(failures.length === 0 ? 0 : 1);
