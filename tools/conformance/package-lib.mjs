// What the package build and the validator share: the package's identity, its dependencies, and
// the reading of profiles/.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'));
export const writeJson = (p, v) => writeFileSync(p, JSON.stringify(v, null, 2) + '\n');

const ukManifest = readJson(join(root, 'tools', 'conformance', 'uk-core', 'package.json'));
export const CORE = { id: 'hl7.fhir.r4.core', version: '4.0.1' };
export const UK_CORE = { id: ukManifest.name, version: ukManifest.version };
const cargo = readFileSync(join(root, 'Cargo.toml'), 'utf8');
const version = /^version = "([^"]+)"/m.exec(cargo)[1];
export const CANONICAL = 'https://fhir.work-health-gateway.org';
export const PACKAGE = {
  id: 'org.work-health-gateway.r4',
  version,
  manifest: {
    name: 'org.work-health-gateway.r4',
    version,
    canonical: CANONICAL,
    title: 'Work and Health Gateway',
    description: "The Work and Health Gateway's FHIR R4 profiles, extensions, terminology and examples",
    fhirVersions: ['4.0.1'],
    type: 'IG',
    license: 'MIT OR Apache-2.0',
    dependencies: { [CORE.id]: CORE.version, [UK_CORE.id]: UK_CORE.version },
    author: 'Work and Health Gateway project',
  },
};
