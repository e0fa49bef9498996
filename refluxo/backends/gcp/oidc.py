"""Verifying the OIDC tokens Cloud Tasks attaches to step deliveries.

IAM already restricts who may invoke the dispatcher function; checking the token in code as
well means a misconfigured IAM binding cannot open the step endpoint: the token must be
signed by Google, be meant for this audience, and name the tasks invoker service account.
"""

from __future__ import annotations

from typing import Any, Protocol

import google.auth.transport.requests
from google.auth import exceptions as auth_exceptions
from google.oauth2 import id_token

from refluxo.runtime.errors import Forbidden, Unauthorized

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class _Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


class HasHeaders(Protocol):
    """What an authenticator reads of a request: its headers (a werkzeug request fits)."""

    @property
    def headers(self) -> _Headers: ...


class OidcCheck:
    """An :data:`~refluxo.api.http.Authenticator` for ``POST /tasks/step``.

    Args:
        audience: the audience the tokens were minted for (the dispatcher's URL).
        service_account: the only identity allowed (the tasks invoker account's email).
        certs_url: where the signing certificates are published (Google's by default).
    """

    def __init__(
        self, audience: str, service_account: str, *, certs_url: str = GOOGLE_CERTS_URL
    ) -> None:
        self.audience = audience
        self.service_account = service_account
        self.certs_url = certs_url
        self._transport = google.auth.transport.requests.Request()

    def verify(self, token: str) -> dict[str, Any]:
        """The token's verified claims; raises Unauthorized or Forbidden."""
        try:
            claims = dict(
                id_token.verify_token(
                    token,
                    self._transport,
                    audience=self.audience,
                    certs_url=self.certs_url,
                    clock_skew_in_seconds=10,
                )
            )
        except (ValueError, auth_exceptions.GoogleAuthError) as err:
            raise Unauthorized(f"invalid OIDC token: {err}") from err
        if claims.get("email") != self.service_account or not claims.get("email_verified"):
            raise Forbidden("the OIDC token is not the tasks invoker's")
        return claims

    def __call__(self, request: HasHeaders) -> None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing OIDC bearer token")
        self.verify(token.strip())
