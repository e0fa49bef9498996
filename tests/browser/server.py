"""The inspector's test server: the embedded runtime, with background workers, behind the
local HTTP server on 127.0.0.1 (a free port), guarded by an API key as a deployment is."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from refluxo.api.auth import ApiKeyCheck
from refluxo.api.http import HttpApi
from refluxo.api.server import LocalServer
from refluxo.host.embedded import EmbeddedRuntime
from tests.browser.app import build_inspector_app

API_KEY = "inspector-key-0123456789abcdef"


@dataclass(frozen=True)
class Served:
    """A running inspector: its address and the runtime behind it."""

    url: str
    runtime: EmbeddedRuntime


@contextmanager
def serving(directory: Path, *, api_key: str | None = API_KEY) -> Iterator[Served]:
    """Serve the inspector's app from a database in ``directory`` until the block ends.

    ``api_key=None``: no key, as a local server without one (it answers this machine only).
    """
    runtime = EmbeddedRuntime(build_inspector_app(), directory / "inspector.db", workers=2)
    runtime.start()
    check = ApiKeyCheck(api_key) if api_key is not None else None
    server = LocalServer(HttpApi(runtime.service, authenticate=check))
    try:
        with server:
            yield Served(server.url, runtime)
    finally:
        runtime.stop()
