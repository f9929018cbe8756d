// Copies the UK Core StructureDefinitions the gateway's profiles build on into uk-core/, as JSON,
// so the FHIR package can be built offline (CI reaches npm, never GitHub or a FHIR registry).
//
// UK Core publishes these as differential-only XML in NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN.
// UKCore-Consent and UKCore-Task are not in a released UK Core package (STU2, 2.0.2, has
// UKCore-Observation only): they are on the repository's main branch, the STU3 build. So the
// copy names the commit it was taken from, and each profile keeps its own version.
//
// Usage: node vendor-ukcore.mjs <git dir of the UK Core repository> <commit>
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fhirJsPackage from 'fhir';
const { Fhir } = fhirJsPackage;

const [gitDir, commit] = process.argv.slice(2);
if (!gitDir || !commit) {
  console.error('usage: node vendor-ukcore.mjs <git dir> <commit>');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'uk-core');
mkdirSync(out, { recursive: true });
const fhir = new Fhir();
const full = execFileSync('git', ['--git-dir', gitDir, 'rev-parse', commit]).toString().trim();

// The profiles the gateway constrains (profiles/StructureDefinition-whg-*.json's bases).
const bases = ['UKCore-Consent', 'UKCore-Observation', 'UKCore-Task'];
for (const name of bases) {
  const xml = execFileSync('git', ['--git-dir', gitDir, 'show', `${full}:structuredefinitions/${name}.xml`]).toString();
  const json = JSON.parse(fhir.xmlToJson(xml));
  writeFileSync(join(out, `StructureDefinition-${name}.json`), JSON.stringify(json, null, 2) + '\n');
  console.log(`${name} ${json.version}`);
}
writeFileSync(
  join(out, 'package.json'),
  JSON.stringify(
    {
      name: 'fhir.r4.ukcore.stu3.currentbuild',
      version: `0.0.0-main.${full.slice(0, 8)}`,
      description: `UK Core profiles the gateway builds on, from NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN at ${full} (Apache-2.0, HL7 UK)`,
      fhirVersions: ['4.0.1'],
      // UKCore-Observation names two R5 cross-version extensions: ../xver holds them.
      dependencies: { 'hl7.fhir.r4.core': '4.0.1', 'hl7.fhir.uv.xver-r5.r4': '0.0.0-local' },
      license: 'Apache-2.0',
    },
    null,
    2,
  ) + '\n',
);
