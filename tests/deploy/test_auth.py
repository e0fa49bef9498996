"""Authentication: API keys for the public API, OIDC tokens for the step endpoint.

The OIDC check is exercised with real RS256 tokens, signed by a key whose certificate a
local server publishes, exactly as Google publishes its own.
"""

from __future__ import annotations

import datetime
import json
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
from refluxo.backends.gcp.oidc import OidcCheck
from refluxo.host.embedded import EmbeddedRuntime

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


@pytest.fixture(scope="module")
def certs_url(issuer: Issuer) -> Iterator[str]:
    body = json.dumps({issuer.kid: issuer.pem()}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    server.shutdown()
    server.server_close()


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
