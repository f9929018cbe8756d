#!/usr/bin/env python3
"""Checks FHIR resources with an independent implementation (fhir.resources 5.1.1: FHIR 4.0.1, and
STU3 3.0.1 for GP Connect Send Document messages).

Usage: check_fhir.py [--version=R4|STU3] FILE...   each FILE holds one resource, a JSON array of
resources, or a Bundle (whose entries are checked one by one as well). Exits 1 listing every
failure.

Beyond fhir.resources' strict parsing (unknown elements, wrong types, missing mandatory elements)
it checks the JSON rules of the FHIR spec that parsers let through: no empty arrays, objects or
strings, no nulls; and that every resource claims a profile.
"""
import json
import sys

import fhir.resources
from fhir.resources.fhirelementfactory import FHIRElementFactory
from fhir.resources.STU3.fhirelementfactory import FHIRElementFactory as STU3ElementFactory

assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__
FACTORY = FHIRElementFactory


def json_rule_errors(node, path):
    if node is None:
        yield f"{path}: null is not allowed in FHIR JSON"
    elif isinstance(node, str) and node.strip() == "":
        yield f"{path}: empty or blank string"
    elif isinstance(node, list):
        if not node:
            yield f"{path}: empty array"
        for i, item in enumerate(node):
            yield from json_rule_errors(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        if not node:
            yield f"{path}: empty object"
        for k, v in node.items():
            yield from json_rule_errors(v, f"{path}.{k}")


def check(resource, where, failures):
    rt = resource.get("resourceType", "?")
    try:
        FACTORY.instantiate(rt, resource)
    except Exception as e:  # the library raises its own FHIRValidationError and KeyErrors
        failures.append(f"{where} {rt}: {str(e).strip()}")
    failures.extend(f"{where} {e}" for e in json_rule_errors(resource, rt))
    if rt not in ("Bundle", "OperationOutcome", "CapabilityStatement") and not resource.get("meta", {}).get("profile"):
        failures.append(f"{where} {rt}: no meta.profile")
    if rt == "Bundle":
        for i, entry in enumerate(resource.get("entry", [])):
            if "resource" in entry:
                check(entry["resource"], f"{where} entry[{i}]", failures)


def main(args):
    global FACTORY
    paths = [a for a in args if not a.startswith("--version=")]
    if "--version=STU3" in args:
        FACTORY = STU3ElementFactory
    failures, count = [], 0
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        for i, resource in enumerate(doc if isinstance(doc, list) else [doc]):
            count += 1
            check(resource, f"{path}#{i}", failures)
    for f in failures:
        print(f)
    print(f"checked {count} resources: {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
