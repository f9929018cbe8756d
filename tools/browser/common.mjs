// What the browser tests share: Debian's Chromium launched headless through playwright-core
// (no browser is downloaded), a page's failures collected, and axe-core over WCAG 2.0–2.2 A/AA.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** Chromium at `executablePath`, headless, with nothing of its own on the network. */
export function launch(executablePath) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * Reports through `fail` what goes wrong on `page`: a console error (a CSP violation is one), a
 * page error, a failed request, or a status of 400 or more other than the one `expected()`
 * says the page is about to answer with.
 */
export function watch(page, fail, expected = () => null, label = "") {
  const prefix = label ? `${label}: ` : "";
  page.on("console", (m) => {
    // A failed load is reported again below, with its URL and status.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      fail(`${prefix}console error on ${page.url()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => fail(`${prefix}page error on ${page.url()}: ${e.message}`));
  page.on("requestfailed", (r) => fail(`${prefix}request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on("response", (r) => {
    const status = r.status();
    if (status === expected()) return;
    if (status >= 400) fail(`${prefix}${status} from ${r.url()}`);
  });
}

/**
 * axe-core's WCAG 2.0–2.2 A and AA rules over `target`'s document, evaluated through the
 * DevTools protocol (the pages allow no script of their own, and this is not one): the result's
 * `passes` and `violations`.
 */
export async function axe(target) {
  await target.evaluate(axeSource);
  return target.evaluate(() =>
    window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"] },
    }),
  );
}

/** Each violation in `result` as one line. */
export function violations(result, name) {
  return result.violations.map(
    (v) => `axe on ${name}: ${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
  );
}
