"""A tiny threaded HTTP server on 127.0.0.1 that records the requests it receives.

Stands in for the dispatcher's HTTP endpoint when a test needs to see what Cloud Tasks
(or a Pub/Sub push subscription) actually sends: method, path, headers, body and the
time of arrival.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps test output clean (no line per request)."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class BackgroundServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) serving ``handler`` from a thread
    started by :meth:`start` and stopped by :meth:`stop`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass(frozen=True)
class Received:
    """One request as received; ``headers`` keys are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at_ms: int


class HttpReceiver:
    """Records every request and answers ``status`` (200 unless told otherwise)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: queue.Queue[Received] = queue.Queue()
        receiver = self

        class Handler(QuietHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.received.put(
                    Received(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                        at_ms=time.time_ns() // 1_000_000,
                    )
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = _record

        self._server = BackgroundServer(Handler)

    @property
    def url(self) -> str:
        return f"{self._server.origin}/deliver"

    def next(self, timeout: float) -> Received:
        """The next request received, waiting up to ``timeout`` seconds for it."""
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no request received within {timeout} s") from None

    def __enter__(self) -> HttpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()
