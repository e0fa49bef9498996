"""Authentication: API keys for the public API, OIDC tokens for the step endpoint.

The OIDC check is exercised with real RS256 tokens, signed by a key whose certificate a
local server publishes, exactly as Google publishes its own.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from google.auth import crypt, jwt

from refluxo.api.auth import ApiKeyCheck
from refluxo.api.http import HttpApi
from refluxo.api.server import create_wsgi_app
from refluxo.backends.gcp.oidc import FAILURE_BACKOFF_S, MAX_STALE_S, OidcCheck
from refluxo.host.embedded import EmbeddedRuntime
from tests.support.gcp_queue import removed_signature

AUDIENCE = "https://dispatcher.example.run.app"
INVOKER = "tasks-invoker@acme.iam.gserviceaccount.com"
KEY = "k" * 32


class Issuer:
    """A signing key and its certificate, published at ``certs_url``."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private.public_key())
            .serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.private, hashes.SHA256())
        )

    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def token(self, **claims: Any) -> str:
        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        now = int(time.time())
        payload = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "email": INVOKER,
            "email_verified": True,
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        signer = crypt.RSASigner.from_string(pem, self.kid)  # type: ignore[no-untyped-call]
        token: bytes = jwt.encode(signer, payload)  # type: ignore[no-untyped-call]
        return token.decode()


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer("key-1")


class CertsServer:
    """Publishes certificates as Google does, counting the fetches; what it answers (the
    certificates, ``Cache-Control``, the status) can change between requests."""

    def __init__(self, certs: dict[str, str]) -> None:
        self.certs = certs
        self.cache_control: str | None = "public, max-age=3600, must-revalidate"
        self.age: str | None = None
        self.status = 200
        self.body: bytes | None = None
        self.fetches = 0
        self._lock = threading.Lock()
        owner = self

        class Certs(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.fetches += 1
                body = owner.body if owner.body is not None else json.dumps(owner.certs).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                if owner.cache_control is not None:
                    self.send_header("Cache-Control", owner.cache_control)
                if owner.age is not None:
                    self.send_header("Age", owner.age)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/oauth2/v1/certs"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def certs(issuer: Issuer) -> Iterator[CertsServer]:
    server = CertsServer({issuer.kid: issuer.pem()})
    yield server
    server.stop()


@pytest.fixture
def certs_url(certs: CertsServer) -> str:
    return certs.url


@pytest.fixture
def secured(runtime: EmbeddedRuntime, certs_url: str) -> Flask:
    api = HttpApi(
        runtime.service,
        authenticate=ApiKeyCheck(KEY),
        authenticate_step=OidcCheck(AUDIENCE, INVOKER, certs_url=certs_url),
    )
    return create_wsgi_app(api)


def test_public_endpoints_need_the_api_key(secured: Flask) -> None:
    with secured.test_client() as client:
        missing = client.post("/runs", json={"workflow": "chain"})
        assert missing.status_code == 401
        assert "missing API key" in missing.get_json()["error"]["message"]
        wrong = client.post("/runs", json={"workflow": "chain"}, headers={"X-API-Key": "x" * 32})
        assert wrong.status_code == 401
        ok = client.post("/runs", json={"workflow": "chain"}, headers={"X-API-Key": KEY})
        assert ok.status_code == 201
        bearer = client.get("/runs", headers={"Authorization": f"Bearer {KEY}"})
        assert bearer.status_code == 200
        assert client.get("/healthz").status_code == 200  # health stays open


def test_step_endpoint_accepts_only_the_invokers_token(
    secured: Flask, issuer: Issuer, runtime: EmbeddedRuntime
) -> None:
    run = runtime.service.start("chain").record
    body = {"runId": run.run_id, "version": 0}
    stranger = Issuer("key-1")  # same key id, different key: signature fails
    cases = [
        ({}, 401, "missing OIDC bearer token"),
        ({"Authorization": "Bearer not.a.token"}, 401, "invalid OIDC token"),
        ({"Authorization": f"Bearer {stranger.token()}"}, 401, "invalid OIDC token"),
        ({"Authorization": f"Bearer {issuer.token(aud='https://elsewhere')}"}, 401, "audience"),
        ({"Authorization": f"Bearer {issuer.token(exp=int(time.time()) - 3600)}"}, 401, "xpired"),
        ({"Authorization": f"Bearer {issuer.token(email='intruder@evil.com')}"}, 403, "invoker"),
        ({"Authorization": f"Bearer {KEY}"}, 401, "invalid OIDC token"),
    ]
    with secured.test_client() as client:
        for headers, status, fragment in cases:
            response = client.post("/tasks/step", json=body, headers=headers)
            assert response.status_code == status, (headers, response.get_json())
            assert fragment in response.get_json()["error"]["message"]
        assert runtime.service.get(run.run_id).version == 0  # nothing ran
        good = client.post(
            "/tasks/step", json=body, headers={"Authorization": f"Bearer {issuer.token()}"}
        )
        assert good.status_code == 200
        assert good.get_json()["outcome"] == "committed"


def test_api_keys_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        ApiKeyCheck("short")


# -- OIDC, hardened ------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand (the certificates' cache reads it)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def step_api(runtime: EmbeddedRuntime, check: OidcCheck) -> Flask:
    return create_wsgi_app(HttpApi(runtime.service, authenticate_step=check))


def deliver(app: Flask, token: str | None, run_id: str = "nothing") -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with app.test_client() as client:
        return client.post("/tasks/step", json={"runId": run_id, "version": 0}, headers=headers)


def unsigned(header: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    """A token with any header (no valid signature)."""

    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(claims or {'iss': 'https://accounts.google.com'})}.c2ln"


GARBAGE = [
    "not.a.token",
    "x",
    "a.b.c.d",
    "." * 3000,
    "e30.e30.e30",  # {} . {} . {}: no key id, no algorithm
    unsigned({"alg": "none", "kid": "key-1"}),
    unsigned({"alg": "HS256", "kid": "key-1"}),
    unsigned({"alg": "RS256"}),  # no key id
    unsigned({"alg": "RS256", "kid": ["key-1"]}),
    base64.urlsafe_b64encode(b"[" * 5_000).decode() + ".e30.e30",  # a header nested deep
    base64.urlsafe_b64encode(b"[" * 20_000).decode() + ".e30.e30",
    "A" * 20_000 + ".e30.e30",  # longer than any identity token
]


@pytest.mark.parametrize("token", GARBAGE)
def test_a_malformed_token_is_refused_without_fetching_certificates(
    runtime: EmbeddedRuntime, certs: CertsServer, token: str
) -> None:
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url))
    response = deliver(app, token)
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"]["message"].startswith("invalid OIDC token: malformed")
    assert certs.fetches == 0


def test_certificates_are_fetched_once_for_many_tokens(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer
) -> None:
    """They used to be fetched on every delivery, even for garbage tokens."""
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url))
    stranger = Issuer("key-1")
    for index in range(30):
        token = issuer.token() if index % 3 else stranger.token()
        response = deliver(app, token)
        assert response.status_code == (200 if index % 3 else 401)
        assert deliver(app, GARBAGE[index % len(GARBAGE)]).status_code == 401
    assert certs.fetches == 1


def test_concurrent_deliveries_on_a_cold_cache_fetch_once(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer
) -> None:
    check = OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url)
    token = issuer.token()
    errors: list[BaseException] = []

    def verify() -> None:
        try:
            check.verify(token)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=verify) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert certs.fetches == 1


@pytest.mark.parametrize(
    ("cache_control", "age", "fresh_for"),
    [
        ("public, max-age=600, must-revalidate, no-transform", None, 600),
        ("max-age=600", "500", 100),  # a cached copy already 500 s old
        ("no-store", None, 0),
        (None, None, 300),  # nothing said: five minutes
    ],
)
def test_the_cache_lasts_as_cache_control_says(
    certs: CertsServer,
    issuer: Issuer,
    cache_control: str | None,
    age: str | None,
    fresh_for: float,
) -> None:
    certs.cache_control, certs.age = cache_control, age
    clock = Clock()
    check = OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url, clock=clock)
    token = issuer.token()
    check.verify(token)
    assert certs.fetches == 1
    if fresh_for:
        clock.now += fresh_for - 1
        check.verify(token)
        assert certs.fetches == 1
    clock.now += 2
    check.verify(token)
    assert certs.fetches == 2


def test_an_unknown_key_refetches_at_most_once_a_minute(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer
) -> None:
    """Keys rotate: a token signed by a new key refetches; a stranger's cannot make the
    server fetch on every delivery."""
    clock = Clock()
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url, clock=clock))
    rotated = Issuer("key-2")
    assert deliver(app, issuer.token()).status_code == 200
    for _ in range(10):
        refused = deliver(app, rotated.token())
        assert refused.status_code == 401
        assert "unknown key" in refused.get_json()["error"]["message"]
    assert certs.fetches == 1
    certs.certs = {issuer.kid: issuer.pem(), rotated.kid: rotated.pem()}
    clock.now += 61
    assert deliver(app, rotated.token()).status_code == 200
    assert deliver(app, rotated.token()).status_code == 200
    assert certs.fetches == 2


@pytest.mark.parametrize(
    ("claims", "status", "fragment"),
    [
        ({"iss": "https://evil.example"}, 401, "not issued by Google"),
        ({"iss": "https://accounts.google.com.evil.example"}, 401, "not issued by Google"),
        ({"iss": ["https://accounts.google.com"]}, 401, "not issued by Google"),
        ({"iss": None}, 401, "not issued by Google"),
        ({"email_verified": "true"}, 403, "invoker"),
        ({"email_verified": 1}, 403, "invoker"),
        ({"email_verified": False}, 403, "invoker"),
        ({"email_verified": None}, 403, "invoker"),
        ({"email": ["tasks-invoker@acme.iam.gserviceaccount.com"]}, 403, "invoker"),
        ({"exp": "tomorrow"}, 401, "invalid OIDC token"),
        ({"aud": {"a": 1}}, 401, "invalid OIDC token"),
    ],
)
def test_claims_are_checked_strictly(
    runtime: EmbeddedRuntime,
    certs: CertsServer,
    issuer: Issuer,
    claims: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    run = runtime.service.start("chain").record
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url))
    response = deliver(app, issuer.token(**claims), run.run_id)
    assert response.status_code == status, response.get_json()
    assert fragment in response.get_json()["error"]["message"]
    assert runtime.service.get(run.run_id).version == 0


@pytest.mark.parametrize("issuer_claim", ["https://accounts.google.com", "accounts.google.com"])
def test_both_spellings_of_googles_issuer_are_accepted(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer, issuer_claim: str
) -> None:
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url))
    assert deliver(app, issuer.token(iss=issuer_claim)).status_code == 200


def test_an_unreachable_certificate_endpoint_is_a_429_that_names_nothing(
    runtime: EmbeddedRuntime, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """Transient: Cloud Tasks retries. The 401 used to show the internal googleapis URL."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}/oauth2/v1/certs"
    closed.close()
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=url))
    with caplog.at_level(logging.WARNING, logger="refluxo"):
        response = deliver(app, issuer.token())
    assert response.status_code == 429  # retried by Cloud Tasks, not counted as unanswered
    body = response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "unavailable"
    for leak in ("http", "127.0.0.1", "googleapis", "certs", "Errno", "Connection"):
        assert leak not in body.replace("certificates", ""), body
    assert any("certificates failed" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, None), (404, None), (200, b"<html>not json</html>"), (200, b'["a list"]')],
)
def test_a_failing_certificate_endpoint_is_a_429(
    runtime: EmbeddedRuntime,
    certs: CertsServer,
    issuer: Issuer,
    status: int,
    body: bytes | None,
) -> None:
    certs.status, certs.body = status, body
    clock = Clock()
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url, clock=clock))
    response = deliver(app, issuer.token())
    assert response.status_code == 429
    assert certs.url not in response.get_data(as_text=True)
    certs.status, certs.body = 200, None  # it recovers: once the back-off passed, it fetches
    clock.now += FAILURE_BACKOFF_S
    assert deliver(app, issuer.token()).status_code == 200


def test_a_certificate_that_cannot_be_read_is_a_failed_fetch_not_a_401(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer
) -> None:
    certs.certs = {issuer.kid: "-----BEGIN CERTIFICATE-----\njunk\n-----END CERTIFICATE-----\n"}
    clock = Clock()
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url, clock=clock))
    assert deliver(app, issuer.token()).status_code == 429  # retried, and not cached
    certs.certs = {issuer.kid: issuer.pem()}
    clock.now += FAILURE_BACKOFF_S
    assert deliver(app, issuer.token()).status_code == 200


def test_a_failing_certificate_server_is_asked_once_per_back_off_not_per_request(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer
) -> None:
    certs.status = 500
    clock = Clock()
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url, clock=clock))
    assert [deliver(app, issuer.token()).status_code for _ in range(5)] == [429] * 5
    assert certs.fetches == 1


def test_held_certificates_still_verify_while_refetching_fails(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer
) -> None:
    clock = Clock()
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url, clock=clock))
    assert deliver(app, issuer.token()).status_code == 200
    certs.status = 503
    clock.now += 3_600 + 1  # the cache expired; the refetch fails
    assert deliver(app, issuer.token()).status_code == 200
    assert certs.fetches == 2
    clock.now += MAX_STALE_S  # far past: held certificates are no longer trusted
    assert deliver(app, issuer.token()).status_code == 429


# -- behind Cloud Run's IAM ----------------------------------------------------------------


def test_a_token_whose_signature_cloud_run_removed_is_refused_unless_iam_is_declared(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """Cloud Run passes on the token it checked without its signature: a function that
    does not declare IAM in front of it cannot tell it from a forgery."""
    app = step_api(runtime, OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url))
    with caplog.at_level(logging.WARNING, logger="refluxo"):
        response = deliver(app, removed_signature(issuer.token()))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == (
        "invalid OIDC token: its signature was removed"
    )
    assert "REFLUXO_INVOKER_IAM=true" in caplog.text


def test_behind_iam_a_token_without_signature_is_judged_by_its_claims(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer
) -> None:
    """Every step on Google Cloud arrives so (the functions require authentication): the
    runs stalled at their first step, each delivery refused as a bad signature."""
    run = runtime.service.start("chain").record
    check = OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url, checked_by_iam=True)
    app = step_api(runtime, check)
    now = int(time.time())
    refused: list[tuple[dict[str, Any], int, str]] = [
        ({"aud": "https://elsewhere.run.app"}, 401, "wrong audience"),
        ({"exp": now - 3600, "iat": now - 7200}, 401, "expired"),
        ({"iat": now + 3600, "exp": now + 7200}, 401, "not valid yet"),
        ({"exp": "tomorrow"}, 401, "malformed"),
        ({"exp": True}, 401, "malformed"),
        ({"exp": 10**400}, 401, "malformed"),
        ({"iat": -(10**400)}, 401, "malformed"),
        ({"iss": "https://issuer.example"}, 401, "not issued by Google"),
        ({"email": "intruder@evil.com"}, 403, "invoker"),
        ({"email_verified": "true"}, 403, "invoker"),
    ]
    for claims, status, fragment in refused:
        response = deliver(app, removed_signature(issuer.token(**claims)), run.run_id)
        assert response.status_code == status, (claims, response.get_json())
        assert fragment in response.get_json()["error"]["message"]
    assert runtime.service.get(run.run_id).version == 0
    # A signed token is still verified in full: a forged signature is no removed one.
    assert deliver(app, Issuer("key-1").token(), run.run_id).status_code == 401
    assert certs.fetches == 1  # the signature-less tokens fetched nothing
    response = deliver(app, removed_signature(issuer.token(aud=[AUDIENCE])), run.run_id)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["outcome"] == "committed"


def test_behind_iam_the_token_cloud_run_checked_is_the_serverless_one(
    runtime: EmbeddedRuntime, certs: CertsServer, issuer: Issuer
) -> None:
    """With ``X-Serverless-Authorization``, Cloud Run checks that header and leaves
    ``Authorization`` as the caller sent it: a signature-less token there proves nothing."""
    check = OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url, checked_by_iam=True)
    app = step_api(runtime, check)
    forged = removed_signature(issuer.token())
    stranger = removed_signature(issuer.token(email="intruder@evil.com"))
    with app.test_client() as client:
        response = client.post(
            "/tasks/step",
            json={"runId": "nothing", "version": 0},
            headers={
                "X-Serverless-Authorization": f"Bearer {stranger}",
                "Authorization": f"Bearer {forged}",
            },
        )
    assert response.status_code == 403
