#!/usr/bin/env python3
"""A small example client for the Work and Health Gateway.

It does what a GP practice system does, the SMART Backend Services way (docs/security.md):

1. signs a client assertion (a short-lived JWT) with the client's private key;
2. swaps it at ``{base}/oauth2/token`` for a five-minute access token;
3. sends a practice referral to ``POST {base}/api/v1/referrals`` and explains the answer
   (status, ``Location`` and the OperationOutcome's issues);
4. reads the stored ServiceRequest back from ``GET {base}/fhir/ServiceRequest/{id}``.

Usage (see examples/python/README.md for registering a client first)::

    python3 examples/python/whg_client.py --base-url http://127.0.0.1:8080 \\
        --client-id my-gp --key data/my-gp.pem [--kid KID] \\
        send-referral fixtures/referrals/valid/01-gp-work-stress-off-sick.json

    python3 examples/python/whg_client.py ... token      # print an access token only

``send-referral`` exits 0 when the gateway answers 200 (an identical resend) or 201 (stored),
1 for any other answer or failure, and 2 for a bad command line.

Dependencies: PyJWT and cryptography (pinned in tools/requirements.txt); HTTP is the standard
library's urllib, so nothing else is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

try:
    import jwt  # PyJWT
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
except ImportError as missing:  # say what to install rather than show a traceback
    sys.exit(
        f"whg_client: {missing.name} is not installed: "
        "pip install PyJWT cryptography (pinned in tools/requirements.txt)"
    )

#: RFC 7523's client assertion type, which the token endpoint requires.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: How long an assertion lives. The gateway refuses one that expires more than five minutes
#: ahead (with 30 s of leeway for clock difference); four minutes leaves room for a client
#: clock that runs a little fast.
ASSERTION_LIFETIME_SECS = 240

#: The signing algorithms the gateway accepts for each key type, the default first. RS384 and
#: ES384 are what SMART Backend Services requires; RS512 (NHS England's signed-JWT pattern) is
#: accepted by gateways with RS512 support and is offered for RSA keys with ``--alg RS512``.
ALGORITHMS_FOR_KEY = {"RSA": ("RS384", "RS512"), "EC": ("ES384",)}

FHIR_JSON = "application/fhir+json"


class ClientError(Exception):
    """Something went wrong that the user should read: printed without a traceback."""


# --------------------------------------------------------------------------------------------
# (a) The client assertion
# --------------------------------------------------------------------------------------------


def load_private_key(pem: bytes, password: bytes | None = None):
    """The private key in ``pem`` (PKCS#8 ``BEGIN PRIVATE KEY``, or the traditional
    ``BEGIN RSA/EC PRIVATE KEY``), as a ``cryptography`` key object."""
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as e:  # encrypted without a password, or a password for a plain key
        raise ClientError(f"cannot read the private key: {e}") from e
    except ValueError as e:
        raise ClientError(
            "cannot read the private key: it must be a PEM private key "
            "(an EC P-384 key for ES384, or an RSA key for RS384)"
        ) from e
    return key


def algorithm_for(key, requested: str | None = None) -> str:
    """The JWS algorithm to sign with, chosen by the key's type: ES384 for an EC P-384 key,
    RS384 for an RSA key (or ``requested``, when it fits the key)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise ClientError(
                f"the EC key is on {key.curve.name}; the gateway takes ES384, which needs a "
                "P-384 (secp384r1) key: `whg clients keygen` makes one"
            )
        kind = "EC"
    elif isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ClientError(f"the RSA key has {key.key_size} bits; use at least 2048")
        kind = "RSA"
    else:
        raise ClientError(
            f"a {type(key).__name__} cannot sign a client assertion: use EC P-384 or RSA"
        )
    allowed = ALGORITHMS_FOR_KEY[kind]
    if requested is None:
        return allowed[0]
    if requested not in allowed:
        raise ClientError(
            f"--alg {requested} does not fit an {kind} key: use {' or '.join(allowed)}"
        )
    return requested


def make_client_assertion(
    client_id: str,
    private_key,
    token_url: str,
    kid: str | None = None,
    alg: str | None = None,
    now: int | None = None,
    lifetime: int = ASSERTION_LIFETIME_SECS,
) -> str:
    """A signed client assertion (RFC 7523, SMART Backend Services) for ``client_id``.

    The gateway checks: ``iss`` = ``sub`` = the client id; ``aud`` = the token endpoint's URL,
    exactly as the gateway publishes it (``token_endpoint`` in
    ``/.well-known/smart-configuration``); ``exp`` in the future but at most five minutes
    ahead; ``iat`` (and ``nbf``, if sent) not in the future; a ``jti`` it has never seen (each
    assertion can be used once, so a fresh UUID every time). The ``kid`` header, when given,
    selects which of the client's registered keys checks the signature.
    """
    if not 0 < lifetime <= 300:
        raise ClientError("an assertion lives at most 300 seconds")
    now = int(time.time()) if now is None else now
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    headers = {"typ": "JWT"}
    if kid:
        headers["kid"] = kid
    return jwt.encode(claims, private_key, algorithm=algorithm_for(private_key, alg), headers=headers)


# --------------------------------------------------------------------------------------------
# HTTP, with the standard library
# --------------------------------------------------------------------------------------------


@dataclass
class Response:
    """An HTTP answer, successful or not."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON, or None if it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request; 4xx and 5xx answers are returned, not raised (their bodies say why)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return Response(r.status, r.reason, _headers(r.headers), r.read(), url)
    except urllib.error.HTTPError as e:
        return Response(e.code, e.reason, _headers(e.headers), e.read(), url)
    except urllib.error.URLError as e:
        raise ClientError(f"cannot reach {url}: {e.reason}") from e
    except TimeoutError as e:
        raise ClientError(f"{url} did not answer within {timeout:.0f} s") from e


def _headers(message) -> dict[str, str]:
    return {k.lower(): v for k, v in message.items()} if message is not None else {}


# --------------------------------------------------------------------------------------------
# (b) The access token, and (c, d) the API
# --------------------------------------------------------------------------------------------


@dataclass
class WhgClient:
    """A registered client system talking to one gateway."""

    base_url: str
    client_id: str
    private_key: Any
    kid: str | None = None
    alg: str | None = None
    #: The assertion's ``aud``; by default ``{base_url}/oauth2/token``.
    token_url: str | None = None
    #: Space-separated scopes to ask for; the client's registered scopes when None.
    scope: str | None = None
    timeout: float = 30.0
    _token: str | None = field(default=None, repr=False)
    _token_expires: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.token_url is None:
            self.token_url = f"{self.base_url}/oauth2/token"

    # (b) ------------------------------------------------------------------------------------

    def access_token(self) -> str:
        """An access token, fetched when there is none or it is about to expire."""
        if self._token is None or time.time() > self._token_expires - 30:
            answer = self.fetch_token()
            self._token = answer["access_token"]
            self._token_expires = time.time() + int(answer.get("expires_in", 300))
        return self._token

    def fetch_token(self) -> dict:
        """Swaps a fresh client assertion for an access token (client credentials grant).

        Answers ``{"access_token", "token_type": "bearer", "expires_in", "scope"}``; raises
        ClientError with the OAuth error (RFC 6749 §5.2) otherwise."""
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": make_client_assertion(
                self.client_id, self.private_key, self.token_url, kid=self.kid, alg=self.alg
            ),
        }
        if self.scope:
            form["scope"] = self.scope
        r = http(
            "POST",
            self.token_url,
            urllib.parse.urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            self.timeout,
        )
        body = r.json()
        if r.status == 200 and isinstance(body, dict) and "access_token" in body:
            return body
        raise ClientError(self._explain_token_refusal(r, body))

    def _explain_token_refusal(self, r: Response, body: Any) -> str:
        lines = [f"the token endpoint refused the request: HTTP {r.status} {r.reason}"]
        if isinstance(body, dict) and "error" in body:
            lines.append(f"  error: {body['error']}")
            if body.get("error_description"):
                lines.append(f"  description: {body['error_description']}")
        elif r.body:
            lines.append(f"  body: {r.body[:500].decode('utf-8', 'replace')}")
        if r.header("retry-after"):
            lines.append(f"  retry after: {r.header('retry-after')} s")
        if isinstance(body, dict) and body.get("error") == "invalid_client":
            # The gateway never says which check failed (its log does). The commonest mistake
            # is an `aud` that is not the URL the gateway calls its token endpoint.
            published = self._published_token_endpoint()
            if published and published != self.token_url:
                lines.append(
                    f"  hint: the gateway's token endpoint is {published}, but the assertion's "
                    f"aud was {self.token_url}: pass --token-url {published}"
                )
            else:
                lines.append(
                    "  hint: check the client id is registered (`whg clients list`), the key is "
                    "the one registered for it (and --kid names it), and this machine's clock"
                )
        return "\n".join(lines)

    def _published_token_endpoint(self) -> str | None:
        try:
            r = http("GET", f"{self.base_url}/.well-known/smart-configuration", timeout=self.timeout)
        except ClientError:
            return None
        body = r.json()
        return body.get("token_endpoint") if r.ok and isinstance(body, dict) else None

    # The API ----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        content_type: str = "application/json",
        accept: str = FHIR_JSON,
    ) -> Response:
        """An authorised request to ``{base_url}{path}``."""
        headers = {"Authorization": f"Bearer {self.access_token()}", "Accept": accept}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = content_type
        return http(method, f"{self.base_url}{path}", data, headers, self.timeout)

    # (c)
    def send_referral(self, referral: dict) -> Response:
        """``POST /api/v1/referrals`` (the practice format, plain JSON). 201: stored; 200: the
        same referral was already stored (a safe retry); 409: the referralId was used for
        different content; 422: invalid (the OperationOutcome lists every problem)."""
        return self.request("POST", "/api/v1/referrals", referral)

    # (d)
    def read_service_request(self, service_request_id: str) -> Response:
        """``GET /fhir/ServiceRequest/{id}``."""
        return self.request("GET", f"/fhir/ServiceRequest/{urllib.parse.quote(service_request_id)}")


def service_request_id(location: str | None) -> str | None:
    """The id in a ``Location`` such as ``http://host/fhir/ServiceRequest/{id}``."""
    if not location:
        return None
    path = urllib.parse.urlsplit(location).path.rstrip("/").split("/")
    if "ServiceRequest" in path:
        i = path.index("ServiceRequest")
        if i + 1 < len(path):
            return path[i + 1]
    return None


# --------------------------------------------------------------------------------------------
# Saying what happened, in human terms
# --------------------------------------------------------------------------------------------


def describe_outcome(outcome: Any) -> list[str]:
    """One line per OperationOutcome issue: severity, where, what, and the NHS error code if
    one is given, e.g. ``error at patient.nhsNumber (value): ...``."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return []
    lines = []
    for issue in outcome.get("issue", []):
        severity = issue.get("severity", "?")
        where = ", ".join(issue.get("expression", []) or issue.get("location", []))
        text = issue.get("diagnostics") or issue.get("details", {}).get("text") or "(no text)"
        line = f"{severity}"
        if where:
            line += f" at {where}"
        line += f" ({issue.get('code', '?')}): {text}"
        codings = issue.get("details", {}).get("coding", [])
        if codings:
            line += " [" + ", ".join(
                f"{c.get('code')}: {c.get('display')}" if c.get("display") else str(c.get("code"))
                for c in codings
            ) + "]"
        lines.append(line)
    return lines


def describe_answer(r: Response) -> list[str]:
    """The status, the Location and what the body says."""
    lines = [f"HTTP {r.status} {r.reason}"]
    if r.header("location"):
        lines.append(f"Location: {r.header('location')}")
    if r.status in (401, 403) and r.header("www-authenticate"):
        lines.append(f"WWW-Authenticate: {r.header('www-authenticate')}")
    if r.status == 429 and r.header("retry-after"):
        lines.append(f"Retry-After: {r.header('retry-after')} s")
    body = r.json()
    issues = describe_outcome(body)
    if issues:
        lines.append(f"The gateway says ({len(issues)} issue{'s' if len(issues) != 1 else ''}):")
        lines.extend(f"  - {i}" for i in issues)
    elif isinstance(body, dict) and "error" in body:  # an OAuth-style error
        lines.append(f"  error: {body['error']}: {body.get('error_description', '')}")
    elif isinstance(body, dict) and body.get("resourceType"):
        lines.append(f"(a {body['resourceType']} came back)")
    elif r.body and body is None:
        lines.append(f"  body: {r.body[:500].decode('utf-8', 'replace')}")
    return lines


def describe_service_request(sr: dict, etag: str | None) -> list[str]:
    """The stored ServiceRequest's key facts."""
    lines = [f"ServiceRequest/{sr.get('id')} (version {sr.get('meta', {}).get('versionId', '?')}"
             + (f", ETag {etag}" if etag else "") + ")"]
    lines.append(f"  status {sr.get('status')}, intent {sr.get('intent')}, priority {sr.get('priority')}")
    lines.append(f"  authored on {sr.get('authoredOn')}")
    for ident in sr.get("identifier", []):
        lines.append(f"  identifier {ident.get('system')}|{ident.get('value')}")
    if sr.get("subject"):
        lines.append(f"  subject {sr['subject'].get('reference')}")
    for p in sr.get("performer", []):
        lines.append(f"  performer {p.get('display') or p.get('reference')}")
    return lines


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def send_referral_command(client: WhgClient, path: str) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            referral = json.load(f)
    except OSError as e:
        raise ClientError(f"cannot read {path}: {e.strerror}") from e
    except ValueError as e:
        raise ClientError(f"{path} is not JSON: {e}") from e

    print(f"Sending {path} (referralId {referral.get('referralId')!r}) to {client.base_url} ...")
    r = client.send_referral(referral)
    for line in describe_answer(r):
        print(line)
    if r.status not in (200, 201):
        if r.status == 409:
            print("That referralId was already used for different content: give the changed "
                  "referral a new referralId.")
        return 1
    if r.status == 200:
        print("(An identical referral was already stored: nothing new was stored.)")

    sr_id = service_request_id(r.header("location"))
    if sr_id is None:
        print("The answer named no ServiceRequest to read back.", file=sys.stderr)
        return 1
    print()
    print(f"Reading ServiceRequest/{sr_id} back ...")
    back = client.read_service_request(sr_id)
    sr = back.json()
    if back.ok and isinstance(sr, dict) and sr.get("resourceType") == "ServiceRequest":
        for line in describe_service_request(sr, back.header("etag")):
            print(line)
    else:
        # The referral is stored all the same; say why it could not be read.
        for line in describe_answer(back):
            print(line)
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Example SMART Backend Services client for the Work and Health Gateway: "
        "gets an access token with a signed client assertion and sends a practice referral.",
        epilog="Exit status: 0 when the referral is stored (201) or was already (200), "
        "1 otherwise, 2 for a bad command line.",
    )
    p.add_argument("--base-url", required=True, help="the gateway, e.g. http://127.0.0.1:8080")
    p.add_argument("--client-id", required=True, help="the registered client id (iss and sub)")
    p.add_argument("--key", required=True, metavar="PEM",
                   help="the client's private key (EC P-384 → ES384, RSA → RS384)")
    p.add_argument("--kid", help="the registered key's id, sent as the assertion's kid header")
    p.add_argument("--alg", choices=["ES384", "RS384", "RS512"],
                   help="override the algorithm (RS512 only for RSA keys, and only where the "
                   "gateway accepts it); by default chosen by the key's type")
    p.add_argument("--token-url",
                   help="the assertion's aud and where it is sent (default {base-url}/oauth2/token)")
    p.add_argument("--scope", help="space-separated scopes to ask for (default: all registered)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    send = sub.add_parser("send-referral", help="send a practice referral JSON file and read it back")
    send.add_argument("file", metavar="FILE", help="a practice referral (profiles/practice-referral.schema.json)")
    sub.add_parser("token", help="print an access token (e.g. for the Postman collection)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        with open(args.key, "rb") as f:
            key = load_private_key(f.read())
        algorithm_for(key, args.alg)  # refuse an unusable key before anything is sent
        client = WhgClient(
            base_url=args.base_url,
            client_id=args.client_id,
            private_key=key,
            kid=args.kid,
            alg=args.alg,
            token_url=args.token_url,
            scope=args.scope,
            timeout=args.timeout,
        )
        if args.command == "token":
            print(client.access_token())
            return 0
        return send_referral_command(client, args.file)
    except OSError as e:
        print(f"whg_client: cannot read {getattr(e, 'filename', '') or 'a file'}: {e.strerror}",
              file=sys.stderr)
        return 1
    except ClientError as e:
        print(f"whg_client: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
