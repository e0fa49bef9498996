"""The local HTTP server: the same handler as the Cloud Function, under a WSGI server.

Some requests never reach the handler: the server refuses them while reading them (a
request line over 64 KiB: 414; a header line over 64 KiB or more than 100 headers: 431; a
request line it cannot read: 400; HTTP/2 or later: 505). Those answers are the API's JSON
error body too (:class:`JsonErrorHandler`), not the HTML page of Python's ``http.server``.

A client that stops sending cannot hold the server: every read of a connection times out
after :data:`READ_TIMEOUT_S` (the connection is closed; a body that stops mid-way is a 400),
a request whose line and headers trickle in is cut off :data:`HEADER_DEADLINE_S` after it
began (so is a kept-alive connection that sends no next request), a whole request
:data:`REQUEST_DEADLINE_S` after it began, and at most :data:`MAX_CONNECTIONS` connections
are served at once, each on its own thread, at most :data:`MAX_CONNECTIONS_PER_CLIENT` of
them from one address of another machine; one more is answered 503 and closed at once,
before anything of it is read. A client trickling headers on many connections thus holds
few slots, and none for long.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from refluxo.api.http import HttpApi, error_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("refluxo.server")


def create_wsgi_app(api: HttpApi) -> Flask:
    """A Flask app that hands every request to ``api``, as functions-framework does.

    Every method and every path reaches ``api`` (Flask's own routing would answer some of
    them, such as ``TRACE`` or a path with an encoded newline, with HTML pages).
    """
    flask_app = Flask("refluxo")

    def handle(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
            # The local server's chunked decoding trusts a declared chunk size: a few bytes
            # could make it allocate and copy far more. Every client of this API knows its
            # body's length; asking for it costs nothing.
            response: Response = error_response(
                411, "length_required", "send the body with a Content-Length"
            )
        else:
            response = api(Request(environ))
        return response(environ, start_response)

    flask_app.wsgi_app = handle  # type: ignore[method-assign]
    return flask_app


_PROTOCOL_ERRORS = {
    400: ("bad_request", "the request line or a header could not be read"),
    414: ("uri_too_long", "the request line is over 64 KiB"),
    431: ("headers_too_large", "a header line is over 64 KiB, or there are over 100 headers"),
    505: ("http_version_not_supported", "this server speaks HTTP/1.0 and HTTP/1.1"),
}


READ_TIMEOUT_S = 30.0
"""How long the server waits for each read of a request (line, headers, body chunk)."""

REQUEST_DEADLINE_S = 60.0
"""How long one request may take from its first byte read to the start of its answer: a
client trickling a byte at a time stays within each read's timeout, never within this."""

HEADER_DEADLINE_S = 10.0
"""How long a request's line and headers may take to arrive, from the first byte awaited
(for a kept-alive connection: from the end of its previous answer)."""

MAX_CONNECTIONS = 128
"""Connections served at once; each holds a thread until it is answered or times out."""

MAX_CONNECTIONS_PER_CLIENT = 32
"""Connections served at once from one address of another machine (this machine's own
loopback clients are not counted apart: they share one address)."""

ACCEPT_PAUSE_S = (0.01, 1.0)
"""How long the server stops accepting after the system refused it a descriptor for a new
connection (out of file descriptors): the first pause, doubled while it lasts, up to the
second. The connection waits in the listening queue meanwhile."""

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_BUSY_BODY = b'{"error": {"code": "busy", "message": "too many connections; retry in a moment"}}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\n\r\n".encode()
    + _BUSY_BODY
)


class JsonErrorHandler(WSGIRequestHandler):
    """werkzeug's request handler, answering the errors of the HTTP layer itself (what
    ``http.server`` refuses before any WSGI application runs) with the API's JSON body."""

    timeout = READ_TIMEOUT_S

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        error, text = _PROTOCOL_ERRORS.get(code, ("http_error", message or "request refused"))
        body = json.dumps({"error": {"code": error, "message": text}}).encode()
        self.log_error("code %d, message %s", code, message)
        if self.request_version == "HTTP/0.9":
            # A request line that could not be read leaves HTTP/0.9, whose answers have no
            # status line nor headers: answer as HTTP/1.0, so the client sees the status.
            self.request_version = "HTTP/1.0"
        self.send_response(code, message)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One access line, plain text: werkzeug's colours it with terminal escapes, which
        a log file or a JSON log would keep as they are."""
        self.log("info", '"%s" %s %s', self.requestline, code, size)


class _DeadlineHandler(JsonErrorHandler):
    """Tells the server when each request starts and ends, for its deadline watchdog."""

    def handle_one_request(self) -> None:
        server = self.server
        if isinstance(server, BoundedServer):
            server.request_started(self.connection)
            try:
                super().handle_one_request()
            finally:
                server.request_ended(self.connection)
        else:
            super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        server = self.server
        if parsed and isinstance(server, BoundedServer):
            server.headers_read(self.connection)
        return parsed


class _QuietHandler(_DeadlineHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_error(self, *args: Any) -> None:
        pass


POLL_INTERVAL_S = 0.1
"""How often the accept loop looks for a request to stop (:meth:`BoundedServer.stop_soon`)
while no connection arrives."""


class CannotListen(Exception):
    """The server cannot listen on its address (in use, not this machine's, not allowed)."""

    def __init__(self, address: Any, error: OSError) -> None:
        host, port = (address[0], address[1]) if isinstance(address, tuple) else (address, "")
        where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        reason = error.strerror or str(error)
        if error.errno == errno.EADDRINUSE:
            reason += " (another program listens there: stop it, or choose another port)"
        super().__init__(f"cannot listen on {where}: {reason}")
        self.errno = error.errno


class _StopServing(Exception):
    """Raised in the accept loop to leave it (:meth:`BoundedServer.stop_soon`)."""


class _Place:
    """A connection's place among the server's connections: given back exactly once,
    whether by the end of its thread or by a handover to that thread that failed."""

    def __init__(self, give_back: Callable[[], None]) -> None:
        self._give_back: Callable[[], None] | None = give_back
        self._lock = threading.Lock()

    def give_back(self) -> None:
        with self._lock:
            give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()


class BoundedServer(ThreadedWSGIServer):
    """werkzeug's threaded server with at most ``max_connections`` connections at once, each
    request read and handled within ``request_deadline_s`` (a watchdog closes the connection
    of a request past it)."""

    def __init__(
        self,
        *args: Any,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
        request_deadline_s: float = REQUEST_DEADLINE_S,
        header_deadline_s: float = HEADER_DEADLINE_S,
        **kwargs: Any,
    ) -> None:
        # Set before binding: a failed bind closes the server (server_close) at once.
        self._slots = threading.BoundedSemaphore(max_connections)
        self.max_connections_per_client = max_connections_per_client
        self._per_client: dict[str, int] = {}
        self.request_deadline_s = request_deadline_s
        self.header_deadline_s = min(header_deadline_s, request_deadline_s)
        # connection -> (when its request began, the time by which it must be done)
        self._started: dict[socket.socket, tuple[float, float]] = {}
        self._started_lock = threading.Lock()
        self._watching = threading.Event()
        self._refused_accepts = 0
        self.pause: Callable[[float], object] = self._watching.wait
        """Waits the given seconds (or until the server closes): the pause after a refused
        accept (a test may watch it)."""
        self._stopping = False
        super().__init__(*args, **kwargs)
        self._watchdog = threading.Thread(
            target=self._watch, name="refluxo-http-deadlines", daemon=True
        )
        self._watchdog.start()

    def request_started(self, connection: socket.socket) -> None:
        now = time.monotonic()
        with self._started_lock:
            self._started[connection] = (now, now + self.header_deadline_s)

    def headers_read(self, connection: socket.socket) -> None:
        """The request's line and headers are in: the whole request's deadline applies."""
        with self._started_lock:
            began = self._started.get(connection)
            if began is not None:
                self._started[connection] = (began[0], began[0] + self.request_deadline_s)

    def request_ended(self, connection: socket.socket) -> None:
        with self._started_lock:
            self._started.pop(connection, None)

    def _watch(self) -> None:
        period = min(1.0, self.header_deadline_s / 4)
        while not self._watching.wait(period):
            now = time.monotonic()
            with self._started_lock:
                late = [c for c, (_, due) in self._started.items() if now > due]
                for connection in late:
                    del self._started[connection]
            for connection in late:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._watching.set()
        super().server_close()

    def server_bind(self) -> None:
        try:
            super().server_bind()
        except OSError as err:  # werkzeug would print it and exit the process
            raise CannotListen(self.server_address, err) from None

    def server_activate(self) -> None:
        try:
            super().server_activate()
        except OSError as err:
            raise CannotListen(self.server_address, err) from None

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection. When the system has no descriptor for it, pause before the
        next try: the listening socket stays readable, so trying again at once would spin a
        core for as long as descriptors run short (and starve the steps of CPU)."""
        try:
            accepted = super().get_request()
        except OSError as err:
            if err.errno in _OUT_OF_RESOURCES:
                self._refused_accepts += 1
                if self._refused_accepts == 1:
                    logger.warning(
                        "cannot accept connections (%s): pausing until descriptors free up",
                        errno.errorcode.get(err.errno or 0, err.errno),
                    )
                first, longest = ACCEPT_PAUSE_S
                self.pause(min(longest, first * 2 ** min(self._refused_accepts - 1, 20)))
            raise
        if self._refused_accepts:
            logger.warning("accepting connections again")
            self._refused_accepts = 0
        return accepted

    def process_request(self, request: Any, client_address: Any) -> None:
        client = _remote_client(client_address)
        if client is not None and not self._take_client_slot(client):
            self._refuse(request)
            return
        if not self._slots.acquire(blocking=False):
            self._release_client_slot(client)
            self._refuse(request)
            return
        place = _Place(lambda: self._give_back(client))
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address, place),
            name="refluxo-http-connection",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            # The thread may be running already (an interrupt while start() waited for it):
            # whichever of the two gives the place back first does, once.
            place.give_back()
            raise

    def _serve_connection(self, request: Any, client_address: Any, place: _Place) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            place.give_back()

    def _give_back(self, client: str | None) -> None:
        self._slots.release()
        self._release_client_slot(client)

    def stop_soon(self) -> None:
        """Make :meth:`serve_forever` return within its poll interval
        (:data:`POLL_INTERVAL_S` when served by :class:`LocalServer`).

        Safe in a signal handler, unlike an exception raised there (one landing while a
        connection is handed to its thread was lost in that handover's cleanup, and the
        server went on serving): it only sets a flag, which the loop reads between two
        connections.
        """
        self._stopping = True

    def service_actions(self) -> None:
        super().service_actions()
        if self._stopping:
            self._stopping = False
            raise _StopServing

    def _take_client_slot(self, client: str) -> bool:
        with self._started_lock:
            held = self._per_client.get(client, 0)
            if held >= self.max_connections_per_client:
                return False
            self._per_client[client] = held + 1
            return True

    def _release_client_slot(self, client: str | None) -> None:
        if client is None:
            return
        with self._started_lock:
            held = self._per_client.get(client, 0) - 1
            if held > 0:
                self._per_client[client] = held
            else:
                self._per_client.pop(client, None)

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.settimeout(0)
            request.send(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)


def _remote_client(client_address: Any) -> str | None:
    """The address of another machine a connection comes from; None for this machine's."""
    try:
        address = ipaddress.ip_address(str(client_address[0]).split("%")[0])
    except (ValueError, IndexError, TypeError):
        return None
    if address.is_loopback or (
        isinstance(address, ipaddress.IPv6Address)
        and address.ipv4_mapped is not None
        and address.ipv4_mapped.is_loopback
    ):
        return None
    return str(address)


class LocalServer:
    """Serves ``api`` on ``host:port`` in a background thread (port 0 picks a free one).

    ``access_log=False`` silences the per-request log lines. Once bound, the API learns its
    port (:meth:`HttpApi.listening_on`), so that the ``Host`` names it answers match it.
    """

    def __init__(
        self,
        api: HttpApi,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_log: bool = False,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
        read_timeout_s: float = READ_TIMEOUT_S,
        request_deadline_s: float = REQUEST_DEADLINE_S,
        header_deadline_s: float = HEADER_DEADLINE_S,
    ) -> None:
        base = _DeadlineHandler if access_log else _QuietHandler
        handler = type(base.__name__, (base,), {"timeout": read_timeout_s})
        self._server = BoundedServer(
            host,
            port,
            create_wsgi_app(api),
            handler,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
            request_deadline_s=request_deadline_s,
            header_deadline_s=header_deadline_s,
        )
        api.listening_on(self.port)
        self._thread: threading.Thread | None = None

    @property
    def server(self) -> BoundedServer:
        """The socket server under it (what accepts and hands out connections)."""
        return self._server

    @property
    def port(self) -> int:
        """The port the server is bound to."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{f'[{name}]' if ':' in name else name}:{port}"

    def start(self) -> LocalServer:
        self._thread = threading.Thread(target=self.serve_forever, name="refluxo-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop_soon` (or :meth:`stop` from another)."""
        with contextlib.suppress(_StopServing):
            self._server.serve_forever(poll_interval=POLL_INTERVAL_S)

    def stop_soon(self) -> None:
        """Make :meth:`serve_forever` return soon; safe in a signal handler."""
        self._server.stop_soon()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
