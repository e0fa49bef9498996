"""Authenticators, and the API key that guards the callers' endpoints.

The key travels in the ``X-API-Key`` header (or ``Authorization: Bearer <key>``) and is
compared in constant time. On Google Cloud the key lives in Secret Manager and the platform
mounts it as the ``REFLUXO_API_KEY`` environment variable; IAM on the function is the first
line of defence, the key the second. A local server without a key answers only callers on
its own machine (:class:`LoopbackOnly`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Protocol

from flask import Request

from refluxo.api.hosts import is_loopback
from refluxo.runtime.errors import Forbidden, Unauthorized

Authenticator = Callable[[Request], None]
"""Checks a request's credentials; raises :class:`~refluxo.runtime.errors.Unauthorized` or
``Forbidden`` to refuse the call. Which routes it guards is their declared
:class:`~refluxo.api.contract.Auth`."""


class _Headers(Protocol):
    # The one signature of werkzeug's overloaded ``Headers.get`` that this needs: with a
    # default here, no overload would match, and a werkzeug request would not fit.
    def get(self, key: str, /) -> str | None: ...


class HasHeaders(Protocol):
    """What an authenticator reads of a request: its headers (a werkzeug request fits)."""

    @property
    def headers(self) -> _Headers: ...


class ApiKeyCheck:
    """An :data:`Authenticator` accepting one secret key."""

    def __init__(self, key: str) -> None:
        if len(key) < 16:
            raise ValueError("an API key must be at least 16 characters long")
        self._key = key.encode()

    def __call__(self, request: HasHeaders) -> None:
        presented = request.headers.get("X-API-Key")
        if presented is None:
            authorization = request.headers.get("Authorization") or ""
            scheme, _, token = authorization.partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" else None
        if not presented:
            raise Unauthorized("missing API key: send it in the X-API-Key header")
        if not hmac.compare_digest(presented.encode(), self._key):
            raise Unauthorized("invalid API key")


class HasPeer(Protocol):
    """What :class:`LoopbackOnly` reads of a request: the peer's address (werkzeug's fits)."""

    @property
    def remote_addr(self) -> str | None: ...


class LoopbackOnly:
    """An :data:`Authenticator` admitting only peers on this machine (a loopback address).

    The callers' check of a local server that has no API key: whatever address it is bound
    to (``functions-framework`` binds every interface by default), it serves its owner
    alone. A proxy on the same machine forwards from loopback, and is trusted like its
    owner: put an API key on a server that is reachable through one.
    """

    def __call__(self, request: HasPeer) -> None:
        peer = request.remote_addr
        if peer is None or not is_loopback(peer):
            raise Forbidden(
                "this server has no API key, so only its own machine may call it "
                "(set REFLUXO_API_KEY to serve other machines)"
            )
