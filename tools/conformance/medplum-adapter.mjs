// What @medplum/core's validator (4.5.2) needs to read a snapshot it otherwise misreads. Each
// adaptation keeps the snapshot's meaning; each answers a limitation of medplum's
// StructureDefinition parser, seen in its code (dist/cjs/index.cjs, class cn):
//
// 1. A slice of `extension` whose type names an extension profile is told apart by that
//    profile's URL (R4 profiling.html#discriminator: a `value` discriminator on `url` resolves
//    through the type's profile). medplum reads only the slice's own `url` child, so an element
//    `…extension:name.url` fixed to the profile URL is added where the snapshot has none.
// 2. medplum reads one level of slicing: every element with a sliceName starts a slice of the
//    current slicing, so the sub-extensions of a complex extension slice (`a.extension:x.extension:y`)
//    are taken for slices of `a.extension` itself. Such a subtree is cut from the profile and
//    checked on its own: re-rooted as an Extension profile and applied to each value of the slice,
//    whose number is checked against the slice's cardinality (validate.mjs).
export function adaptForMedplum(sd) {
  const elements = sd.snapshot.element;
  const nested = [];
  const kept = [];
  // The slices (by id) that hold slices of their own: their subtrees are checked separately.
  const nestedRoots = new Set();
  for (const e of elements) {
    const parts = e.id.split('.');
    const sliced = parts.map((p, i) => (p.includes(':') ? i : -1)).filter((i) => i >= 0);
    if (sliced.length >= 2) nestedRoots.add(parts.slice(0, sliced[0] + 1).join('.'));
  }
  for (const rootId of nestedRoots) {
    const rootElement = elements.find((e) => e.id === rootId);
    const subtree = elements.filter((e) => e.id === rootId || e.id.startsWith(rootId + '.'));
    const rootPath = rootElement.path;
    nested.push({
      // The extension URL the slice's values carry: its profile's, or its fixed url child's.
      url:
        rootElement.type?.[0]?.profile?.[0] ??
        subtree.find((e) => e.id === `${rootId}.url`)?.fixedUri,
      profile: {
        resourceType: 'StructureDefinition',
        url: `${sd.url}#${rootId}`,
        name: `${sd.name}_${rootId.replace(/[^A-Za-z0-9]/g, '_')}`,
        kind: 'complex-type',
        type: 'Extension',
        snapshot: {
          element: subtree.map((e) => ({
            ...e,
            id: 'Extension' + e.id.slice(rootId.length),
            path: 'Extension' + e.path.slice(rootPath.length),
            ...(e.id === rootId ? { sliceName: undefined, min: 0, max: '*' } : {}),
          })),
        },
      },
      // Where the slice's values are, from the profile's root: e.g. ['extension'].
      parentPath: rootPath.split('.').slice(1),
      // The slice's own cardinality, which medplum no longer sees once the subtree is cut.
      min: rootElement.min ?? 0,
      max: rootElement.max ?? '*',
    });
  }
  for (const e of elements) {
    if ([...nestedRoots].some((r) => e.id.startsWith(r + '.'))) continue;
    kept.push(e);
    const profile = e.sliceName && e.path.endsWith('.extension') && e.type?.[0]?.profile?.[0];
    if (profile && !elements.some((c) => c.id === `${e.id}.url`)) {
      kept.push({ id: `${e.id}.url`, path: `${e.path}.url`, min: 1, max: '1', type: [{ code: 'uri' }], fixedUri: profile });
    }
  }
  return { profile: { ...sd, snapshot: { element: kept } }, nested };
}
