"""Bodies and cursors built to cost the server: each answered at once, with a 4xx."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from refluxo.api.http import HttpApi
from refluxo.api.parsing import parse_json, read_body
from refluxo.api.server import LocalServer
from refluxo.errors import LimitExceededError
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime.errors import BadRequest
from tests.support.waiting import wait_until


@pytest.fixture
def server(runtime: EmbeddedRuntime) -> Iterator[LocalServer]:
    with LocalServer(HttpApi(runtime.service)) as served:
        yield served


def raw_request(server: LocalServer, data: bytes) -> tuple[int, dict[str, object]]:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_an_unclosed_string_of_escapes_is_measured_in_linear_time() -> None:
    # Scanned with a backtracking regex, 32 KB took 7.6 s and 1 MiB would take hours.
    text = ("{" * 65 + '"' + '\\"' * 500_000).encode()
    started = time.perf_counter()
    with pytest.raises(LimitExceededError):
        parse_json(text, "the body")
    assert time.perf_counter() - started < 2.0


def test_a_cursor_with_a_lone_surrogate_is_a_400(
    server: LocalServer, runtime: EmbeddedRuntime
) -> None:
    cursor = base64.urlsafe_b64encode(b'[1,"\\ud800"]').decode()
    status, body = raw_request(
        server,
        f"GET /runs?cursor={cursor} HTTP/1.1\r\nHost: {server.url[7:]}\r\n\r\n".encode(),
    )
    assert status == 400
    assert body == {"error": {"code": "bad_request", "message": "invalid cursor"}}


def test_a_chunked_body_is_refused_before_it_is_read(server: LocalServer) -> None:
    request = (
        f"POST /runs HTTP/1.1\r\nHost: {server.url[7:]}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n{}"
    ).encode()
    status, body = raw_request(server, request)
    assert status == 411
    assert body["error"] == {
        "code": "length_required",
        "message": "send the body with a Content-Length",
    }


class BrokenStream:
    def read(self, size: int = -1) -> bytes:
        raise OSError("Invalid chunk header")


class Framed:
    content_length = None
    stream = BrokenStream()


def test_a_body_that_cannot_be_read_is_a_400() -> None:
    with pytest.raises(BadRequest, match="could not be read"):
        read_body(Framed(), 1 << 20, required=True)


def test_a_body_that_stops_mid_way_is_answered_when_the_read_times_out(
    runtime: EmbeddedRuntime,
) -> None:
    with LocalServer(HttpApi(runtime.service), read_timeout_s=0.5) as served:
        host, port = served.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                f"POST /runs HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                '{"workflow":'.encode()
            )
            started = time.monotonic()
            reply = b""
            while chunk := sock.recv(65536):  # the client sends nothing more
                reply += chunk
        waited = time.monotonic() - started
    assert waited < 5, "the server held a stalled request past its read timeout"
    if reply:  # answered before closing: a 4xx JSON error, never a 500
        head, _, body = reply.partition(b"\r\n\r\n")
        assert 400 <= int(head.split()[1]) < 500
        assert "error" in json.loads(body)


def test_connections_past_the_cap_are_refused_at_once_and_slots_come_back(
    runtime: EmbeddedRuntime,
) -> None:
    with LocalServer(HttpApi(runtime.service), max_connections=3) as served:
        host, port = served.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
        try:
            with socket.create_connection((host, int(port)), timeout=10) as extra:
                reply = b""
                while chunk := extra.recv(65536):
                    reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            assert int(head.split()[1]) == 503
            assert json.loads(body)["error"]["code"] == "busy"
        finally:
            for sock in idle:
                sock.close()

        def healthz_answers() -> bool:
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(f"GET /healthz HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            return reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200")

        wait_until(healthz_answers, 10, "a freed slot to serve /healthz")


def test_a_request_trickled_in_is_cut_off_at_its_deadline(runtime: EmbeddedRuntime) -> None:
    """Each read arrives within the read timeout, so only a deadline on the whole request
    stops a client that sends a byte at a time from holding a connection slot forever."""
    with LocalServer(
        HttpApi(runtime.service), read_timeout_s=5, request_deadline_s=0.5, max_connections=1
    ) as served:
        host, port = served.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n".encode())
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 5:
                try:
                    sock.sendall(b"X: y\r\n")  # a header line now and then, never the end
                except OSError:
                    closed = True
                    break
                try:
                    sock.settimeout(0.2)
                    if sock.recv(65536) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
            assert closed, "the trickling request still holds its connection"
            assert time.monotonic() - started < 4

        def healthz_answers() -> bool:
            with socket.create_connection((host, int(port)), timeout=10) as fresh:
                fresh.sendall(f"GET /healthz HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
                return fresh.recv(65536).split(b" ")[1:2] == [b"200"]

        wait_until(healthz_answers, 10, "the slot to be free again")


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``sock`` (while the client trickles header lines)."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        try:
            sock.sendall(b"X: y\r\n")
        except OSError:
            return True
        try:
            sock.settimeout(0.2)
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_headers_that_trickle_in_are_cut_off_long_before_the_request_deadline(
    runtime: EmbeddedRuntime,
) -> None:
    """A slow-headers client holds its slot for the header deadline, not the whole
    request's: the request line and headers must all be in within it."""
    with LocalServer(
        HttpApi(runtime.service), read_timeout_s=30, request_deadline_s=60, header_deadline_s=0.5
    ) as served:
        host, port = served.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n".encode())
            started = time.monotonic()
            assert _closed_by_server(sock, 8), "the trickling headers still hold the slot"
            assert time.monotonic() - started < 6


def test_a_request_whose_headers_arrived_in_time_is_answered(runtime: EmbeddedRuntime) -> None:
    with LocalServer(HttpApi(runtime.service), header_deadline_s=0.5) as served:
        host, port = served.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"GET /healthz HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.split(b" ")[1:2] == [b"200"]


def test_one_address_of_another_machine_holds_at_most_its_share_of_connections(
    runtime: EmbeddedRuntime,
) -> None:
    """Connections handed to the server as a socket server receives them (the address of
    each client as accepted): a third from one remote address is refused at once, while
    another address is still served."""
    with LocalServer(HttpApi(runtime.service), max_connections_per_client=2) as served:
        server = served.server
        held: list[socket.socket] = []
        try:
            for _ in range(2):
                ours, theirs = socket.socketpair()
                held.append(ours)
                server.process_request(theirs, ("203.0.113.7", 40000))
            ours, theirs = socket.socketpair()
            held.append(ours)
            server.process_request(theirs, ("203.0.113.7", 40001))
            ours.settimeout(10)
            refused = b""
            while chunk := ours.recv(65536):
                refused += chunk
            assert refused.split(b" ")[1:2] == [b"503"]
            assert json.loads(refused.partition(b"\r\n\r\n")[2])["error"]["code"] == "busy"

            other, theirs = socket.socketpair()
            held.append(other)
            server.process_request(theirs, ("198.51.100.9", 40000))
            other.sendall(f"GET /healthz HTTP/1.0\r\nHost: {served.url[7:]}\r\n\r\n".encode())
            other.settimeout(10)
            reply = b""
            while chunk := other.recv(65536):
                reply += chunk
            assert reply.split(b" ")[1:2] == [b"200"]
        finally:
            for sock in held:
                sock.close()


def test_out_of_descriptors_the_server_pauses_accepting_instead_of_spinning(
    runtime: EmbeddedRuntime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With no descriptor left for a new connection, accept fails while the listening
    socket stays readable: trying again at once spun a core for as long as it lasted."""
    import errno
    import socketserver

    refusals = 3
    accept = socketserver.TCPServer.get_request

    def out_of_descriptors(self: socketserver.TCPServer) -> tuple[socket.socket, object]:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return accept(self)

    monkeypatch.setattr(socketserver.TCPServer, "get_request", out_of_descriptors)
    pauses: list[float] = []
    with (
        caplog.at_level("WARNING", logger="refluxo.server"),
        LocalServer(HttpApi(runtime.service)) as served,
    ):
        served.server.pause = pauses.append
        host, port = served.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"GET /healthz HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    assert reply.split(b"\r\n")[0].endswith(b"200 OK")
    assert pauses == [0.01, 0.02, 0.04]  # a pause after each refusal, growing
    assert caplog.text.count("cannot accept connections (EMFILE)") == 1
    assert caplog.text.count("accepting connections again") == 1


def test_an_interrupt_while_a_connection_is_handed_over_stops_the_server(
    runtime: EmbeddedRuntime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C (or SIGTERM as an interrupt) landing while the accept loop starts a
    connection's thread: the connection's place was given back twice, and the error that
    raised replaced the interrupt, so the server went on serving."""
    import threading

    start = threading.Thread.start
    interrupted = threading.Event()

    def interrupted_once_started(self: threading.Thread) -> None:
        start(self)
        if threading.current_thread() is serving and not interrupted.is_set():
            interrupted.set()
            self.join(10)  # the connection is served (and its place given back) first
            raise KeyboardInterrupt

    served = LocalServer(HttpApi(runtime.service))
    serving = threading.Thread(target=served.serve_forever, daemon=True)
    serving.start()
    monkeypatch.setattr(threading.Thread, "start", interrupted_once_started)
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /healthz HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
    serving.join(10)
    assert interrupted.is_set()
    assert not serving.is_alive(), "the server went on serving after the interrupt"
    assert "released too many times" not in capsys.readouterr().err
