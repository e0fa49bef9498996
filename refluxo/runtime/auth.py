"""API-key authentication for the public endpoints.

The key travels in the ``X-API-Key`` header (or ``Authorization: Bearer <key>``) and is
compared in constant time. On Google Cloud the key lives in Secret Manager and the platform
mounts it as the ``REFLUXO_API_KEY`` environment variable; IAM on the function is the first
line of defence, the key the second.
"""

from __future__ import annotations

import hmac

from flask import Request

from refluxo.runtime.errors import Unauthorized


class ApiKeyCheck:
    """An :data:`~refluxo.runtime.http.Authenticator` accepting one secret key."""

    def __init__(self, key: str) -> None:
        if len(key) < 16:
            raise ValueError("an API key must be at least 16 characters long")
        self._key = key.encode()

    def __call__(self, request: Request) -> None:
        presented = request.headers.get("X-API-Key")
        if presented is None:
            authorization = request.headers.get("Authorization", "")
            scheme, _, token = authorization.partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" else None
        if not presented:
            raise Unauthorized("missing API key: send it in the X-API-Key header")
        if not hmac.compare_digest(presented.encode(), self._key):
            raise Unauthorized("invalid API key")
