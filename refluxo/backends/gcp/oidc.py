"""Verifying the OIDC tokens Cloud Tasks attaches to step deliveries.

IAM already restricts who may invoke the dispatcher function; checking the token in code as
well means a misconfigured IAM binding cannot open the step endpoint: the token must be
signed by Google (RS256, a key Google publishes), be issued by Google
(``https://accounts.google.com``), be meant for this audience, be current, and name the
tasks invoker service account with a verified email (the boolean ``true``, nothing else).

Google's signing certificates are fetched once and kept for as long as their
``Cache-Control: max-age`` says (hours, in practice), not once per delivery. A token that
is not even a well-formed RS256 JWT is refused before any fetch; one signed by a key the
cache does not hold triggers at most one refetch a minute (keys rotate; strangers' tokens
must not make this server hammer Google). If the certificates cannot be fetched, the
delivery is answered 503 ``unavailable`` (Cloud Tasks retries it): no answer names the
certificates' address or any detail of the transport.

``REFLUXO_OIDC_CERTS_URL`` points the check at a private issuer's certificates instead
(the same ``{kid: PEM}`` document): the end-to-end tests sign their own tokens so.

Behind Cloud Run's IAM (a function that requires authentication, as Terraform deploys
them) the token never arrives signed: Cloud Run checks it (signature, audience, the
caller's ``roles/run.invoker``) and hands it on with its signature replaced by
``SIGNATURE_REMOVED_BY_GOOGLE``. Such a token is accepted only where the deployment
declares that IAM checks every request first (``REFLUXO_INVOKER_IAM=true``: a function
that anybody may invoke would otherwise accept forged claims), and then its claims are
checked all the same (issuer, audience, expiry, the invoker's verified email). The token
Cloud Run checked is in ``X-Serverless-Authorization`` when the caller sent one (Cloud
Run then leaves ``Authorization`` alone), in ``Authorization`` otherwise.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeGuard

import google.auth.transport.requests
from google.auth import crypt, jwt
from google.auth import exceptions as auth_exceptions

from refluxo.errors import TransientError
from refluxo.runtime.errors import Forbidden, Unauthorized

logger = logging.getLogger("refluxo.oidc")

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"

GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
"""The ``iss`` of Google-signed identity tokens (both spellings are in use)."""

MAX_TOKEN_LENGTH = 16 * 1024
"""Longer bearer tokens are refused unread (Google's identity tokens are about 1 KiB)."""

DEFAULT_CERTS_TTL_S = 300.0
"""How long certificates are kept when the response says nothing about caching."""

MAX_CERTS_TTL_S = 86_400.0
"""Certificates are refetched at least daily, whatever the response says."""

REFETCH_INTERVAL_S = 60.0
"""A token signed by a key the cache does not hold refetches at most this often."""

FETCH_TIMEOUT_S = 10.0

SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
"""What Cloud Run puts in place of the signature of a token it checked."""

CLOCK_SKEW_S = 10
"""How far a token's times may be off this server's clock."""

_MAX_TIME = 2**53
"""Token times beyond this (seconds) are no times: JSON numbers a double holds exactly."""

FAILURE_BACKOFF_S = 5.0
"""After a failed fetch, how long requests wait before fetching again (meanwhile they use
the certificates held, if they have the token's key, or answer 503 at once): a failing or
slow certificate server then costs one fetch per interval, not one per request."""

MAX_STALE_S = 86_400.0
"""How long past their cache lifetime held certificates still verify tokens while every
refetch fails (Google publishes a key well before signing with it and keeps it well after)."""

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?([0-9]{1,10})\"?", re.IGNORECASE)


class _Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


class HasHeaders(Protocol):
    """What an authenticator reads of a request: its headers (a werkzeug request fits)."""

    @property
    def headers(self) -> _Headers: ...


class _Response(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def data(self) -> bytes: ...


Transport = Callable[..., Any]
"""A ``google.auth.transport.Request``: ``transport(url, method=..., timeout=...)``."""


def cache_lifetime(headers: Mapping[str, str]) -> float:
    """Seconds a certificates response may be kept, per its ``Cache-Control`` (and
    ``Age``): ``max-age`` minus the age, 0 for ``no-store``/``no-cache``, else a default;
    at most a day."""
    lowered = {key.lower(): value for key, value in headers.items()}
    control = lowered.get("cache-control", "")
    match = _MAX_AGE.search(control)
    if match is not None:
        age = lowered.get("age", "0").strip()
        lifetime = float(match.group(1)) - (float(age) if age.isascii() and age.isdigit() else 0)
    elif "no-store" in control.lower() or "no-cache" in control.lower():
        lifetime = 0.0
    else:
        lifetime = DEFAULT_CERTS_TTL_S
    return max(0.0, min(lifetime, MAX_CERTS_TTL_S))


def _is_time(value: object) -> TypeGuard[float]:
    """A token time: seconds since the epoch, a number that is not a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return -_MAX_TIME < value < _MAX_TIME  # NaN and the infinities fail it, so do huge ints


def _category(error: Exception) -> str:
    """What is wrong with a token, in words that reveal nothing of the configuration."""
    text = str(error).lower()
    if "expired" in text:
        return "expired"
    if "too early" in text:
        return "not valid yet"
    if "audience" in text:
        return "wrong audience"
    if "signature" in text:
        return "bad signature"
    return "malformed"


class OidcCheck:
    """An :data:`~refluxo.api.http.Authenticator` for ``POST /tasks/step``.

    Args:
        audience: the audience the tokens were minted for (the dispatcher's URL).
        service_account: the only identity allowed (the tasks invoker account's email).
        certs_url: where the signing certificates are published, a JSON object of key
            ids to x509 PEM certificates (Google's when None: a private issuer's, such as
            a test's, otherwise).
        issuers: the accepted ``iss`` claims (Google's by default).
        checked_by_iam: every request passed Cloud Run's IAM check first, so a token
            whose signature Cloud Run removed is judged by its claims alone.
        clock: a monotonic clock in seconds (for the certificates' cache).
        wall_clock: the time in seconds since the epoch (for the claims of a token whose
            signature was removed).
        transport: makes the HTTP request for the certificates (google-auth's requests
            transport by default).
    """

    def __init__(
        self,
        audience: str,
        service_account: str,
        *,
        certs_url: str | None = None,
        issuers: frozenset[str] = GOOGLE_ISSUERS,
        checked_by_iam: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        transport: Transport | None = None,
    ) -> None:
        self.audience = audience
        self.service_account = service_account
        self.certs_url = certs_url or GOOGLE_CERTS_URL
        self.issuers = issuers
        self.checked_by_iam = checked_by_iam
        self._clock = clock
        self._wall_clock = wall_clock
        self._transport: Transport = transport or google.auth.transport.requests.Request()
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._expires = float("-inf")
        self._fetched = float("-inf")
        self._failed_until = float("-inf")

    # -- certificates ----------------------------------------------------------------

    def _fetch(self) -> None:
        """Fetch the certificates (the lock held). Raises TransientError, never naming
        the address: the reason goes to the log only."""
        self._fetched = self._clock()
        try:
            response: _Response = self._transport(
                self.certs_url, method="GET", timeout=FETCH_TIMEOUT_S
            )
            if response.status != 200:
                raise ValueError(f"status {response.status}")
            certs = json.loads(response.data.decode("utf-8"))
            if not isinstance(certs, dict) or not all(
                isinstance(kid, str) and isinstance(pem, str) for kid, pem in certs.items()
            ):
                raise ValueError("not a mapping of key ids to certificates")
            for pem in certs.values():
                # A certificate it cannot read makes the fetch a failure (never cached).
                crypt.RSAVerifier.from_string(pem)  # type: ignore[no-untyped-call]
        except (
            auth_exceptions.GoogleAuthError,
            ValueError,
            TypeError,
            RecursionError,
            OSError,
        ) as err:
            logger.warning("fetching the OIDC signing certificates failed: %s", err)
            raise TransientError(
                "the OIDC signing certificates could not be fetched to check the token"
            ) from None
        self._certs = certs
        self._expires = self._fetched + cache_lifetime(dict(response.headers))

    def certificates(self, kid: str) -> Mapping[str, str]:
        """The current certificates, fetched if the cache expired or lacks ``kid`` (and
        was not refetched in the last :data:`REFETCH_INTERVAL_S`)."""
        with self._lock:
            now = self._clock()
            stale = now >= self._expires
            unknown = kid not in self._certs and now - self._fetched >= REFETCH_INTERVAL_S
            if stale or unknown:
                if now < self._failed_until:
                    return self._held(kid, now)
                try:
                    self._fetch()
                except TransientError:
                    self._failed_until = now + FAILURE_BACKOFF_S
                    return self._held(kid, now)
            return dict(self._certs)

    def _held(self, kid: str, now: float) -> Mapping[str, str]:
        """The certificates held, while fetching fails: if they have ``kid`` and expired
        less than :data:`MAX_STALE_S` ago; else the failure (TransientError)."""
        if kid in self._certs and now - self._expires < MAX_STALE_S:
            return dict(self._certs)
        raise TransientError(
            "the OIDC signing certificates could not be fetched to check the token"
        )

    # -- tokens ----------------------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any]:
        """The token's verified claims; raises Unauthorized, Forbidden or (if the
        certificates cannot be fetched) TransientError."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise Unauthorized("invalid OIDC token: malformed")
        try:
            header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, RecursionError, auth_exceptions.GoogleAuthError):
            raise Unauthorized("invalid OIDC token: malformed") from None
        if not isinstance(header, Mapping) or header.get("alg") != "RS256":
            raise Unauthorized("invalid OIDC token: malformed (an RS256 token with a key id)")
        if token.rpartition(".")[2] == SIGNATURE_REMOVED:
            claims = self._claims_checked_by_iam(token)
        else:
            claims = self._signed_claims(token, header)
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer not in self.issuers:
            raise Unauthorized("invalid OIDC token: not issued by Google")
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            raise Forbidden("the OIDC token is not the tasks invoker's")
        return claims

    def _signed_claims(self, token: str, header: Mapping[str, Any]) -> dict[str, Any]:
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthorized("invalid OIDC token: malformed (an RS256 token with a key id)")
        certs = self.certificates(kid)
        if kid not in certs:
            raise Unauthorized("invalid OIDC token: signed by an unknown key")
        try:
            decoded = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=certs, audience=self.audience, clock_skew_in_seconds=CLOCK_SKEW_S
            )
            return dict(decoded)
        except (
            ValueError,
            TypeError,
            RecursionError,
            auth_exceptions.GoogleAuthError,
        ) as err:
            raise Unauthorized(f"invalid OIDC token: {_category(err)}") from None

    def _claims_checked_by_iam(self, token: str) -> dict[str, Any]:
        """The claims of a token Cloud Run checked and removed the signature of."""
        if not self.checked_by_iam:
            logger.warning(
                "refused a token whose signature Google removed, as Cloud Run does once it "
                "has checked the token (the function requires authentication): set "
                "REFLUXO_INVOKER_IAM=true where IAM guards this function"
            )
            raise Unauthorized("invalid OIDC token: its signature was removed")
        try:
            decoded = jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, RecursionError, auth_exceptions.GoogleAuthError):
            raise Unauthorized("invalid OIDC token: malformed") from None
        if not isinstance(decoded, Mapping):
            raise Unauthorized("invalid OIDC token: malformed")
        claims = dict(decoded)
        now = self._wall_clock()
        issued, expires = claims.get("iat"), claims.get("exp")
        if not _is_time(issued) or not _is_time(expires):
            raise Unauthorized("invalid OIDC token: malformed")
        if now > expires + CLOCK_SKEW_S:
            raise Unauthorized("invalid OIDC token: expired")
        if now < issued - CLOCK_SKEW_S:
            raise Unauthorized("invalid OIDC token: not valid yet")
        audience = claims.get("aud")
        if audience != self.audience and not (
            isinstance(audience, list) and self.audience in audience
        ):
            raise Unauthorized("invalid OIDC token: wrong audience")
        return claims

    def __call__(self, request: HasHeaders) -> None:
        presented = request.headers.get("X-Serverless-Authorization") or request.headers.get(
            "Authorization"
        )
        scheme, _, token = (presented or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing OIDC bearer token")
        self.verify(token.strip())
