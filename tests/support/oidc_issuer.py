"""A private OIDC token issuer for the end-to-end tests: Google's, in miniature.

Cloud Tasks attaches to each delivery an RS256 identity token Google signs for the task's
service account; the dispatcher checks it against the certificates Google publishes
(``{kid: x509 PEM}``, cached as ``Cache-Control`` says). Here:

* :class:`SigningKey`: an RSA key pair, generated when the issuer starts, with a self-signed
  x509 certificate and a key id;
* :class:`OidcIssuer`: publishes its certificate on 127.0.0.1 as Google publishes its
  own, under as many paths as there are deployments to tell apart (``/certs/<label>``),
  counting the fetches of each, and mints tokens with Google's claims (``iss``, ``aud``,
  ``email``, ``email_verified``, ``iat``, ``exp``) that any claim can override.

A function started with ``REFLUXO_OIDC_CERTS_URL=issuer.certs_url(label)`` checks these
tokens exactly as it checks Google's.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import urllib.error
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from tests.support.emulators import local_urlopen
from tests.support.receiver import BackgroundServer, QuietHandler

GOOGLE_ISSUER = "https://accounts.google.com"
TASKS_SERVICE_ACCOUNT = "tasks-invoker@demo-test.iam.gserviceaccount.com"
"""The tasks invoker's identity in the end-to-end deployments (a ``demo-`` project's)."""

TOKEN_LIFETIME_S = 3600
"""How long a minted token is valid (Google's identity tokens last an hour)."""

CERTS_MAX_AGE_S = 3600
"""The ``max-age`` the certificates are published with (Google's is a few hours)."""

READY_TIMEOUT_S = 10.0


class SigningKey:
    """An RSA key pair, its self-signed certificate and its key id."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"refluxo test issuer {kid}")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(self._private, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        private_pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self._signer = crypt.RSASigner.from_string(private_pem, kid)  # type: ignore[no-untyped-call]

    def sign(self, claims: dict[str, Any]) -> str:
        """``claims`` as an RS256 JWT whose header names this key's id."""
        token: bytes = jwt.encode(self._signer, claims)  # type: ignore[no-untyped-call]
        return token.decode()


class OidcIssuer:
    """Signs identity tokens and publishes the certificate that verifies them.

    Start and stop it as a context manager: the certificates' server listens on a free
    port of 127.0.0.1 and is ready when it answers.

    Args:
        kid: The signing key's id.
        max_age_s: The ``max-age`` of the certificates' ``Cache-Control``.
    """

    def __init__(self, kid: str = "refluxo-test-key-1", *, max_age_s: int = CERTS_MAX_AGE_S):
        self.key = SigningKey(kid)
        self.max_age_s = max_age_s
        self._impostor: SigningKey | None = None
        self._fetches: dict[str, int] = {}
        self._lock = threading.Lock()
        issuer = self

        class Certs(QuietHandler):
            def do_GET(self) -> None:
                label = self.path.removeprefix("/certs/")
                if label == self.path or not label:
                    status, body = (204, b"") if self.path == "/ready" else (404, b"{}")
                    self._answer(status, body, cache=False)
                    return
                with issuer._lock:
                    issuer._fetches[label] = issuer._fetches.get(label, 0) + 1
                body = json.dumps({issuer.key.kid: issuer.key.certificate_pem}).encode()
                self._answer(200, body, cache=True)

            def _answer(self, status: int, body: bytes, *, cache: bool) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                if cache:
                    self.send_header(
                        "Cache-Control", f"public, max-age={issuer.max_age_s}, must-revalidate"
                    )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = BackgroundServer(Certs)

    # -- the certificates ------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return self._server.origin

    def certs_url(self, label: str) -> str:
        """Where the certificates are published for the deployment ``label``."""
        return f"{self.origin}/certs/{label}"

    def fetches(self, label: str) -> int:
        """How many times the certificates at :meth:`certs_url` (``label``) were fetched."""
        with self._lock:
            return self._fetches.get(label, 0)

    # -- tokens ------------------------------------------------------------------------------

    def impostor(self) -> SigningKey:
        """Another key with this issuer's key id: its tokens look right and are forged."""
        if self._impostor is None:
            self._impostor = SigningKey(self.key.kid)
        return self._impostor

    def mint(
        self,
        audience: str,
        email: str = TASKS_SERVICE_ACCOUNT,
        *,
        key: SigningKey | None = None,
        issued_at: float | None = None,
        **claims: Any,
    ) -> str:
        """An identity token as Google mints it for ``email`` and ``audience``.

        ``issued_at`` (epoch seconds) backdates it; ``claims`` override or add any claim
        (``email_verified="true"``, ``iss=...``); ``key`` signs it with another key.
        """
        now = int(time.time() if issued_at is None else issued_at)
        payload: dict[str, Any] = {
            "iss": GOOGLE_ISSUER,
            "aud": audience,
            "azp": "112233445566778899000",
            "sub": "112233445566778899000",
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            **claims,
        }
        return (key or self.key).sign(payload)

    # -- lifecycle ------------------------------------------------------------------------

    def _answers(self) -> bool:
        try:
            with local_urlopen(f"{self.origin}/ready", timeout=1.0) as response:
                return response.status == 204
        except (urllib.error.URLError, OSError):
            return False

    def __enter__(self) -> OidcIssuer:
        self._server.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        pause = threading.Event()  # never set: wait() is the polling interval
        while not self._answers():
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the OIDC issuer on {self.origin} did not answer")
            pause.wait(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()


__all__ = [
    "GOOGLE_ISSUER",
    "TASKS_SERVICE_ACCOUNT",
    "OidcIssuer",
    "SigningKey",
]
