#!/usr/bin/env python3
"""Checks recorded HTTP exchanges against profiles/openapi.json, with openapi-core.

Usage: check_exchanges.py EXCHANGES.ndjson [--spec FILE] [--allow-unexercised OP,OP...]

Each line of EXCHANGES.ndjson is one exchange:
  {"method": "POST", "url": "/api/v1/referrals?x=1",
   "request": {"headers": {"content-type": "..."}, "body": "<text or null>"},
   "status": 201,
   "response": {"headers": {"content-type": "...", "location": "..."}, "body": "<text or null>"}}
(`url` is path and query; bodies are UTF-8 text, null when empty or binary.)

It checks, and prints every problem with the exchange's method, url and status:
  (a) the document: valid OpenAPI 3.1 (openapi-spec-validator), unique operationIds, and every
      example in it valid against its own schema;
  (b) each exchange on a non-FHIR route: the request (path parameters, query, headers, security,
      body) and the response (a status the operation documents, a documented content type, the
      body's schema, documented headers). Exchanges under /fhir are skipped: the FHIR API is
      checked by its own tools. A 404 on a path that matches no documented template is what the
      tests' probes of unknown paths get, and a 405 on a documented path with another method is
      the router's answer to a wrong method: both are counted, not failed; any other exchange on
      an undocumented path or method is a failure. A request that breaks the document (bad JSON,
      a wrong content type, no token) is expected to be refused: with a 4xx answer its request
      errors are counted, not failed, and only the answer must conform;
  (c) coverage: every operation appears at least once (any status), except those named with
      --allow-unexercised; the statuses seen are listed per operation.
Exits 0 when everything conforms and every operation was exercised, else 1. Messages are cut to
200 characters: they may quote bodies, which can be long.
"""
import argparse
import collections
import copy
import json
import pathlib
import re
import sys
from urllib.parse import parse_qsl, urlsplit

try:
    import jsonschema
    from openapi_core import Config, OpenAPI
    from openapi_core.datatypes import RequestParameters
    from openapi_core.validation.response.validators import V31ResponseHeadersValidator
    from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator
    from werkzeug.datastructures import Headers, ImmutableMultiDict
except ImportError as e:  # say how to get them rather than only that one is missing
    sys.exit(f"check_exchanges: {e}: install tools/requirements.txt (pip install -r tools/requirements.txt)")

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_SPEC = ROOT / "profiles" / "openapi.json"
CAP = 200
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Where the recorded requests are sent: the document's server is "/", so any origin will do.
HOST = "http://gateway.test"


def cap(text):
    text = " ".join(str(text).split())
    return text if len(text) <= CAP else text[: CAP - 1] + "…"


def essence(content_type):
    return (content_type or "").split(";")[0].strip().lower()


def fhir_json(value, **_parameters):
    return json.loads(value)


def text(value, **_parameters):
    # FHIR XML and the reports' CSV are schematised as strings: the FHIR tools and the reports'
    # own tests check what they say.
    return value.decode("utf-8") if isinstance(value, bytes) else value


# openapi-core deserialises application/json only; the gateway's FHIR answers are +json.
DESERIALIZERS = {"application/fhir+json": fhir_json, "application/fhir+xml": text, "text/csv": text}


# ------------------------------------------------------------------------------- the document


def check_document(spec):
    """Problems with the document itself."""
    problems = []
    if spec.get("openapi") != "3.1.0":
        problems.append(f"openapi is {spec.get('openapi')!r}, not 3.1.0")
    try:
        for e in OpenAPIV31SpecValidator(spec).iter_errors():
            where = "/".join(str(p) for p in e.absolute_path)
            problems.append(f"not valid OpenAPI 3.1 at {where or '/'}: {e.message}")
    except Exception as e:  # a $ref to nowhere raises (quoting the whole document) rather than yields
        problems.append(f"not valid OpenAPI 3.1: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return problems
    seen = collections.Counter(op.get("operationId") for _, _, op in operations(spec))
    for op_id, n in seen.items():
        if op_id is None:
            problems.append("an operation has no operationId")
        elif n > 1:
            problems.append(f"operationId {op_id} is used {n} times")
    problems.extend(check_examples(spec))
    return problems


def operations(spec):
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def pointer(*parts):
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def check_examples(spec):
    """Every media type's examples against its schema: an example that does not conform would
    teach integrators the wrong thing. The whole document is the schema's root, so its
    `#/components/...` references resolve as in the document."""
    problems = []
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER

    def media_types(path, method, op):
        body = resolve(spec, op.get("requestBody", {}))
        for mt, media in body.get("content", {}).items():
            yield ("paths", path, method, "requestBody", "content", mt), media
        for status, response in op.get("responses", {}).items():
            if "$ref" in response:
                continue  # components' responses are checked once, below
            for mt, media in response.get("content", {}).items():
                yield ("paths", path, method, "responses", status, "content", mt), media

    found = [mt for path, method, op in operations(spec) for mt in media_types(path, method, op)]
    for name, response in spec.get("components", {}).get("responses", {}).items():
        for mt, media in response.get("content", {}).items():
            found.append((("components", "responses", name, "content", mt), media))
    for parts, media in found:
        examples = {k: v.get("value") for k, v in media.get("examples", {}).items() if "value" in v}
        if "example" in media:
            examples["example"] = media["example"]
        if not examples or "schema" not in media:
            continue
        root = copy.copy(spec)
        root["$ref"] = pointer(*parts, "schema")
        validator = jsonschema.Draft202012Validator(root, format_checker=checker)
        for ex_name, value in examples.items():
            for e in validator.iter_errors(value):
                problems.append(f"example {ex_name} of {'/'.join(parts[1:])}: {json_path(e)}: {e.message}")
    return problems


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
        target = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


# ------------------------------------------------------------------------------- exchanges


class Exchange:
    """One recorded exchange, its shape checked."""

    def __init__(self, number, record):
        self.number = number
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        self.method = record.get("method")
        self.url = record.get("url")
        self.status = record.get("status")
        if not isinstance(self.method, str) or not self.method:
            raise ValueError("no method")
        if not isinstance(self.url, str) or not self.url:
            raise ValueError("no url")
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError("status is not a number")
        self.method = self.method.upper()
        parts = urlsplit(self.url)
        self.path = parts.path or "/"
        self.query = parse_qsl(parts.query, keep_blank_values=True)
        self.req_headers, self.req_body = self._side(record, "request")
        self.resp_headers, self.resp_body = self._side(record, "response")

    @staticmethod
    def _side(record, name):
        side = record.get(name) or {}
        if not isinstance(side, dict):
            raise ValueError(f"{name} is not an object")
        headers = side.get("headers") or {}
        if not isinstance(headers, dict):
            raise ValueError(f"{name}.headers is not an object")
        pairs = []
        for k, v in headers.items():
            for value in v if isinstance(v, list) else [v]:
                pairs.append((str(k), str(value)))
        body = side.get("body")
        if body is not None and not isinstance(body, str):
            raise ValueError(f"{name}.body is neither text nor null")
        return Headers(pairs), body

    def where(self):
        return f"line {self.number}: {self.method} {cap(self.url)} -> {self.status}"


class OARequest:
    """An exchange's request as openapi-core's Request protocol reads it."""

    def __init__(self, ex, method):
        self.host_url = HOST
        # Left percent-encoded, as routers match it: an encoded `/` stays inside its segment.
        self.path = ex.path
        self.method = method
        self.body = ex.req_body.encode("utf-8") if ex.req_body is not None else None
        self.content_type = (ex.req_headers.get("content-type") or "").lower()
        cookies = []
        for header in ex.req_headers.getlist("cookie"):
            for part in header.split(";"):
                if "=" in part:
                    k, v = part.split("=", 1)
                    cookies.append((k.strip(), v.strip()))
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(ex.query),
            header=ex.req_headers,
            cookie=ImmutableMultiDict(cookies),
            path={},
        )


class OAResponse:
    def __init__(self, ex):
        self.status_code = ex.status
        self.headers = ex.resp_headers
        self.content_type = ex.resp_headers.get("content-type") or ""
        self.data = ex.resp_body.encode("utf-8") if ex.resp_body is not None else b""


class Routes:
    """The document's path templates, matched as the gateway's router matches: a literal
    segment before a parameter."""

    def __init__(self, spec):
        self.templates = []
        for path, item in spec.get("paths", {}).items():
            regex = "".join(
                "[^/]+" if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[^}]+\})", path)
                if part
            )
            literal = len(re.sub(r"\{[^}]+\}", "", path))
            self.templates.append((re.compile(f"^{regex}$"), -path.count("{"), literal, path, item))
        self.templates.sort(key=lambda t: (t[1], t[2]), reverse=True)

    def match(self, path):
        for regex, _, _, template, item in self.templates:
            if regex.match(path):
                return template, item
        return None, None


def json_path(e):
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)


def schema_error_messages(se, where=""):
    """A jsonschema error as messages: for anyOf/oneOf, the most telling error of each branch
    (which branch was meant is the reader's call), rather than "not valid under any"."""
    if not se.context:
        message = se.message
        if isinstance(se.instance, (dict, list)) and message.startswith(repr(se.instance)[:20]):
            # jsonschema quotes the whole object (`{...} should not be valid under ...`): name the
            # rule instead, so that no body is printed.
            kind = "object" if isinstance(se.instance, dict) else "array"
            message = f"the {kind} fails {se.validator}: {json.dumps(se.validator_value)}"
        return [f"{where}{json_path(se)}: {message}"]
    branches = collections.defaultdict(list)
    for sub in se.context:
        branches[sub.relative_schema_path[0]].append(sub)
    keyword = se.validator
    return [
        m
        for index, errors in sorted(branches.items())
        for m in schema_error_messages(jsonschema.exceptions.best_match(errors), f"{where}[{keyword} {index}] ")
    ]


def describe(err, most=5):
    """What an openapi-core error says was wrong: each schema error at its place in the body (at
    most `most` of them), else the innermost cause's message. The errors' own text is left out
    where it quotes the whole value (a body can be long and personal)."""
    chain, cause = [err], err.__cause__
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__
    name = type(err).__name__
    for c in chain:
        schema_errors = getattr(c, "schema_errors", None)
        if schema_errors:
            found = []
            for se in schema_errors:
                found.extend(f"{name}: {m}" for m in schema_error_messages(se))
            if len(found) > most:
                found = found[:most] + [f"{name}: ... and {len(found) - most} more"]
            return found
    innermost = chain[-1]
    text = str(innermost) or type(innermost).__name__
    return [f"{name}: {text}"]


def documented_response(spec, op, status):
    responses = op.get("responses", {})
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            return resolve(spec, responses[key])
    return None


def check_exchange(ex, spec, routes, full, headers_only, tally, seen, problems):
    def fail(what, message):
        problems.append(f"{ex.where()}: {what}: {cap(message)}")

    if ex.path == "/fhir" or ex.path.startswith("/fhir/"):
        tally["skipped: /fhir"] += 1
        return
    template, item = routes.match(ex.path)
    if template is None:
        if ex.status == 404:
            tally["expected: 404 on a path matching no documented route"] += 1
        else:
            fail("undocumented path", f"{ex.path} matches no path of the document")
        return
    # HEAD is answered by every GET route (axum): checked as the GET, without a body.
    method = "get" if ex.method == "HEAD" and "head" not in item else ex.method.lower()
    op = item.get(method) if method in METHODS else None
    if op is None:
        if ex.status == 405:
            tally["expected: 405 for a method the path does not take"] += 1
        else:
            fail("undocumented method", f"{template} documents no {ex.method}")
        return
    seen[op.get("operationId")][ex.status] += 1
    tally["checked"] += 1

    request = OARequest(ex, method)
    request_errors = list(full.iter_request_errors(request))
    if request_errors:
        if 400 <= ex.status < 500:
            tally["expected: refused requests that break the document"] += 1
        else:
            for e in request_errors:
                for message in describe(e):
                    fail("request", message)

    documented = documented_response(spec, op, ex.status)
    if documented is None:
        fail("response", f"status {ex.status} is not documented for {op.get('operationId')} "
                         f"(documented: {', '.join(op.get('responses', {}))})")
        return
    content = documented.get("content") or {}
    response_type = ex.resp_headers.get("content-type")
    empty = not ex.resp_body
    if empty:
        if response_type and content and essence(response_type) not in {essence(k) for k in content}:
            fail("response", f"content type {response_type} is not documented for {ex.status} "
                             f"(documented: {', '.join(content)})")
        prefer = (ex.req_headers.get("prefer") or "").lower()
        if content and not response_type and ex.method != "HEAD" and "return=minimal" not in prefer:
            fail("response", f"no body, but {ex.status} documents one ({', '.join(content)})")
        # An empty or binary body: the headers can still be checked.
        validator = headers_only
        if ex.resp_body is None and response_type and ex.method != "HEAD":
            tally["response bodies not checked: binary"] += 1
    else:
        validator = full
    for e in validator.iter_response_errors(request, OAResponse(ex)):
        for message in describe(e):
            fail("response", message)


def read_exchanges(path):
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, line


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exchanges", help="NDJSON file of recorded exchanges ('-' for stdin)")
    parser.add_argument("--spec", default=str(DEFAULT_SPEC), help="the OpenAPI document (default: profiles/openapi.json)")
    parser.add_argument("--allow-unexercised", default="", metavar="OPERATIONID,...",
                        help="operations the tests cannot reach, not to be reported as unexercised")
    args = parser.parse_args()
    allowed = {a.strip() for a in args.allow_unexercised.split(",") if a.strip()}

    spec = json.loads(pathlib.Path(args.spec).read_text(encoding="utf-8"))
    problems = [f"document: {cap(p)}" for p in check_document(spec)]
    all_ops = {op.get("operationId"): (method.upper(), path) for path, method, op in operations(spec)}
    print(f"== document {args.spec}: OpenAPI {spec.get('openapi')}, {len(all_ops)} operations, "
          f"{'valid' if not problems else f'{len(problems)} problems'}")
    for name in sorted(allowed - set(all_ops)):
        problems.append(f"--allow-unexercised names {name}, which is no operationId of the document")
    if any(p.startswith("document: not valid OpenAPI") for p in problems):
        for p in problems:
            print(p)
        print("== result: FAIL (the document is not valid OpenAPI 3.1: exchanges not checked)")
        return 1

    # Checked above already; openapi-core need not check it again for each validator.
    config = dict(spec_validator_cls=None, extra_media_type_deserializers=DESERIALIZERS)
    full = OpenAPI.from_dict(spec, config=Config(**config))
    headers_only = OpenAPI.from_dict(spec, config=Config(response_validator_cls=V31ResponseHeadersValidator, **config))
    routes = Routes(spec)
    tally = collections.Counter()
    seen = collections.defaultdict(collections.Counter)
    total = 0
    for number, line in read_exchanges(args.exchanges):
        total += 1
        try:
            ex = Exchange(number, json.loads(line))
        except ValueError as e:  # json.JSONDecodeError is one
            problems.append(f"line {number}: not an exchange: {cap(e)}")
            continue
        check_exchange(ex, spec, routes, full, headers_only, tally, seen, problems)

    print(f"== exchanges: {total} read")
    for what, n in sorted(tally.items()):
        print(f"   {n:6d}  {what}")
    print("== coverage (statuses seen per operation)")
    width = max((len(o) for o in all_ops), default=0)
    unexercised = []
    for op_id, (method, path) in all_ops.items():
        statuses = seen.get(op_id)
        if statuses:
            shown = " ".join(f"{s}x{n}" for s, n in sorted(statuses.items()))
        elif op_id in allowed:
            shown = "(not exercised: allowed)"
        else:
            shown = "NOT EXERCISED"
            unexercised.append(op_id)
        print(f"   {op_id:<{width}}  {method:<6} {path}  {shown}")
    if problems:
        print(f"== problems ({len(problems)})")
        for p in problems:
            print(p)
    if unexercised:
        print(f"== unexercised operations ({len(unexercised)}): {', '.join(unexercised)}")
    ok = not problems and not unexercised
    print(f"== result: {'OK' if ok else 'FAIL'} ({len(problems)} problems, {len(unexercised)} operations unexercised)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
