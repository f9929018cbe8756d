#!/usr/bin/env python3
"""Writes profiles/openapi.json, the OpenAPI 3.1 description of the gateway's non-FHIR routes, from
the hand-written tools/openapi/openapi.source.json and the files the project already keeps, so
that no copy of them in the document can go stale:

- `{"$schemaFile": "practice-referral.schema.json"}` (directly under components/schemas) becomes
  that JSON Schema from profiles/, as an OpenAPI 3.1 schema object (JSON Schema 2020-12): its
  `$schema` and `$id` dropped, its `$ref`s rewritten to point into the document, and any draft-07
  spelling (`definitions`, array `items`, `dependencies`) converted;
- `{"$codes": "contact-channel", ...}` becomes `{"type": "string", "enum": [...codes...], ...}`
  from profiles/CodeSystem-contact-channel.json, the lists the gateway checks codes against;
- `{"$fixture": "fixtures/..."}` becomes that file's JSON (request examples stay real fixtures);
- `info.version` `$cargoVersion` becomes the crate's version from Cargo.toml.

And what every route gets from the router's layers (src/api/mod.rs) is added to every operation
rather than written thirty times: 429, 500 and 503 answers (where the source does not say
otherwise) and the X-Request-ID / X-Correlation-ID headers. (Format negotiation, and so 406 and
FHIR XML, is the FHIR API's only: these routes answer JSON whatever Accept says.)

It also compares the document's paths and methods with the non-FHIR routes of `router()` in
src/api/mod.rs and reports any difference: a route the document lacks, or one it describes that
the router does not have.

Usage:
  python3 tools/gen_openapi.py            writes profiles/openapi.json
  python3 tools/gen_openapi.py --check    exits 1 if profiles/openapi.json is not what would be
                                          written, or the document and the router differ
Standard library only, so it runs without the test venv.
"""
import argparse
import copy
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tools" / "openapi" / "openapi.source.json"
OUT = ROOT / "profiles" / "openapi.json"
PROFILES = ROOT / "profiles"
ROUTER = ROOT / "src" / "api" / "mod.rs"

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# The router's layers answer these on any route (src/api/mod.rs, limits.rs, error.rs).
LAYER_RESPONSES = {
    "429": "TooManyRequests",
    "500": "InternalServerError",
    "503": "ServiceUnavailable",
}
FHIR_JSON = "application/fhir+json"


class GenError(Exception):
    pass


def cargo_version():
    text = (ROOT / "Cargo.toml").read_text()
    package = re.search(r"^\[package\]\s*$(.*?)^\[", text, re.S | re.M)
    found = re.search(r'^version\s*=\s*"([^"]+)"', package.group(1) if package else text, re.M)
    if not found:
        raise GenError("Cargo.toml has no [package] version")
    return found.group(1)


def code_list(system):
    path = PROFILES / f"CodeSystem-{system}.json"
    if not path.is_file():
        raise GenError(f"$codes {system!r}: no {path.relative_to(ROOT)}")
    cs = json.loads(path.read_text())

    def walk(concepts):
        for c in concepts:
            yield c["code"]
            yield from walk(c.get("concept", []))

    codes = list(walk(cs.get("concept", [])))
    if not codes:
        raise GenError(f"$codes {system!r}: the CodeSystem has no concepts")
    return codes, cs.get("url")


def to_2020_12(node, pointer_base):
    """A JSON Schema (draft-07 or 2020-12) as a 2020-12 schema embedded at `pointer_base`."""
    if isinstance(node, list):
        return [to_2020_12(n, pointer_base) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("$schema", "$id"):
            # An embedded `$id` would make its `$ref`s resolve against that URI, not this document.
            continue
        if key == "definitions":
            key = "$defs"
        if key in ("$defs", "properties", "patternProperties", "dependentSchemas"):
            out[key] = {k: to_2020_12(v, pointer_base) for k, v in value.items()}
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = rebase_ref(value, pointer_base)
            continue
        if key == "items" and isinstance(value, list):
            # draft-07 tuple form: 2020-12 says prefixItems, and additionalItems becomes items.
            out["prefixItems"] = to_2020_12(value, pointer_base)
            if "additionalItems" in node:
                out["items"] = to_2020_12(node["additionalItems"], pointer_base)
            continue
        if key == "additionalItems":
            continue
        if key == "dependencies":
            for k, v in value.items():
                if isinstance(v, list):
                    out.setdefault("dependentRequired", {})[k] = v
                else:
                    out.setdefault("dependentSchemas", {})[k] = to_2020_12(v, pointer_base)
            continue
        out[key] = to_2020_12(value, pointer_base)
    return out


def rebase_ref(ref, pointer_base):
    if ref == "#":
        return pointer_base
    if ref.startswith("#/definitions/"):
        return pointer_base + "/$defs/" + ref[len("#/definitions/"):]
    if ref.startswith("#/"):
        return pointer_base + ref[1:]
    raise GenError(f"schema $ref {ref!r}: only references within the schema file can be embedded")


def expand(node, where):
    """Replaces the placeholders in `node` (found at JSON pointer `where`)."""
    if isinstance(node, list):
        return [expand(n, f"{where}/{i}") for i, n in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if "$schemaFile" in node:
        parent, _, name = where.rpartition("/")
        if parent != "#/components/schemas" or len(node) != 1:
            raise GenError(f"{where}: $schemaFile goes alone, directly under components/schemas")
        path = PROFILES / node["$schemaFile"]
        schema = json.loads(path.read_text())
        embedded = to_2020_12(schema, where)
        note = f"The JSON Schema {schema.get('$id', path.name)} (profiles/{path.name}), embedded."
        embedded["description"] = (embedded.get("description", "") + "\n\n" + note).strip()
        return embedded
    if "$codes" in node:
        rest = {k: v for k, v in node.items() if k != "$codes"}
        codes, url = code_list(node["$codes"])
        schema = {"type": "string", "enum": codes}
        described = f"A code of `{node['$codes']}` ({url})."
        schema["description"] = rest.pop("description", described)
        if schema["description"] != described:
            schema["description"] += f" {described}"
        schema.update(expand(rest, where))
        return schema
    if "$fixture" in node:
        if len(node) != 1:
            raise GenError(f"{where}: $fixture goes alone")
        return json.loads((ROOT / node["$fixture"]).read_text())
    return {k: expand(v, f"{where}/{escape(k)}") for k, v in node.items()}


def escape(key):
    return key.replace("~", "~0").replace("/", "~1")


def add_layers(doc):
    """What the router's layers give every operation."""
    for path, item in doc["paths"].items():
        params = item.setdefault("parameters", [])
        for name in ("XRequestId", "XCorrelationId"):
            ref = {"$ref": f"#/components/parameters/{name}"}
            if ref not in params:
                params.append(ref)
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            for status, name in LAYER_RESPONSES.items():
                responses.setdefault(status, {"$ref": f"#/components/responses/{name}"})
            op["responses"] = dict(sorted(responses.items()))


def leftover_placeholders(node, where="#"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("$schemaFile", "$codes", "$fixture"):
                yield where
            yield from leftover_placeholders(v, f"{where}/{escape(k)}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leftover_placeholders(v, f"{where}/{i}")
    elif node == "$cargoVersion":
        yield where


def build():
    doc = json.loads(SOURCE.read_text())
    doc = expand(copy.deepcopy(doc), "#")
    if doc.get("info", {}).get("version") == "$cargoVersion":
        doc["info"]["version"] = cargo_version()
    add_layers(doc)
    left = list(leftover_placeholders(doc))
    if left:
        raise GenError("placeholders left unexpanded at " + ", ".join(left))
    check_refs(doc)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n", doc


def check_refs(doc):
    """Every local `$ref` names something in the document (a typo fails here, not in a client)."""
    def resolve(pointer):
        node = doc
        for part in pointer[2:].split("/") if pointer != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return False
        return True

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#") and not resolve(ref):
                raise GenError(f"$ref {ref} names nothing in the document")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)


def router_routes():
    """(template with `{}` for each parameter, method) of every non-FHIR route in router()."""
    text = ROUTER.read_text()
    start = text.index("pub fn router(")
    body = text[start:text.index(".fallback(", start)]
    # Comments between routes would otherwise join two routes into one match.
    body = re.sub(r"//[^\n]*", "", body)
    routes = set()
    for m in re.finditer(r'\.route\(\s*"([^"]+)"\s*,(.*?)\)\s*(?=\.route\(|$)', body, re.S):
        path, handlers = m.group(1), m.group(2)
        if path == "/fhir" or path.startswith("/fhir/"):
            continue
        # Handler chains such as `post(a).get(b)` or `axum::routing::put(a).get(b)`; the lookbehind
        # keeps handler names that merely end in a method's name (`x::get_all(`) out.
        methods = re.findall(r"(?<![A-Za-z0-9_])(get|put|post|delete|patch|head|options|trace)\(", handlers)
        if not methods:
            raise GenError(f"router(): cannot read the methods of {path}")
        for method in methods:
            routes.add((normalise(path), method))
    return routes


def normalise(path):
    return re.sub(r"\{[^}]*\}", "{}", path)


def route_differences(doc):
    documented = {
        (normalise(path), method)
        for path, item in doc["paths"].items()
        for method in METHODS
        if method in item
    }
    routed = router_routes()
    problems = []
    for path, method in sorted(routed - documented):
        problems.append(f"router() has {method.upper()} {path}, which the document does not describe")
    for path, method in sorted(documented - routed):
        problems.append(f"the document describes {method.upper()} {path}, which router() does not have")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if profiles/openapi.json is stale or differs from the router")
    args = parser.parse_args()
    try:
        text, doc = build()
        drift = route_differences(doc)
    except (GenError, OSError, ValueError, KeyError) as e:
        print(f"gen_openapi: {e}", file=sys.stderr)
        return 1
    for d in drift:
        print(f"gen_openapi: {d}", file=sys.stderr)
    if args.check:
        current = OUT.read_text() if OUT.is_file() else ""
        stale = current != text
        if stale:
            print(f"gen_openapi: {OUT.relative_to(ROOT)} is stale: run python3 tools/gen_openapi.py", file=sys.stderr)
        return 1 if stale or drift else 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(doc['paths'])} paths)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
