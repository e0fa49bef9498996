"""The local HTTP server: the same handler as the Cloud Function, under a WSGI server."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from refluxo.api.http import HttpApi

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def create_wsgi_app(api: HttpApi) -> Flask:
    """A Flask app that hands every request to ``api``, as functions-framework does.

    Every method and every path reaches ``api`` (Flask's own routing would answer some of
    them, such as ``TRACE`` or a path with an encoded newline, with HTML pages).
    """
    flask_app = Flask("refluxo")

    def handle(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response: Response = api(Request(environ))
        return response(environ, start_response)

    flask_app.wsgi_app = handle  # type: ignore[method-assign]
    return flask_app


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class LocalServer:
    """Serves ``api`` on ``host:port`` in a background thread (port 0 picks a free one).

    ``access_log=False`` silences the per-request log lines.
    """

    def __init__(
        self, api: HttpApi, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False
    ) -> None:
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            create_wsgi_app(api),
            threaded=True,
            request_handler=WSGIRequestHandler if access_log else _QuietHandler,
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="refluxo-http", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
