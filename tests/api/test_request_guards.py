"""What the HTTP layer refuses before any route runs, and how: CSRF, DNS rebinding,
strangers without a key, and requests the server itself cannot read.

Each refusal is the JSON error body and changes nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from refluxo.api.auth import LoopbackOnly
from refluxo.api.contract import Auth, Route
from refluxo.api.hosts import AllowedHosts, is_loopback, split_host
from refluxo.api.http import HttpApi
from refluxo.api.routes import ROUTES
from refluxo.api.server import LocalServer, create_wsgi_app
from refluxo.host.embedded import EmbeddedRuntime
from tests.api.conftest import CALLER, RECONCILER, SCHEDULER
from tests.api.support import concrete_path, database

BODY_ROUTES = [pytest.param(r, id=r.label) for r in ROUTES if r.body is not None]
CREDENTIALS = {Auth.CALLER: CALLER, Auth.SCHEDULER: SCHEDULER, Auth.RECONCILER: RECONCILER}


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["message"]
    code: str = body["error"]["code"]
    return code


@pytest.fixture
def paused(runtime: EmbeddedRuntime) -> str:
    runtime.service.start("approval", run_id="paused")
    runtime.scheduler.drain()
    return "paused"


# -- cross-site requests: only application/json changes state -----------------------------

BROWSER_BODIES = [
    pytest.param("text/plain", b'{"workflow": "chain", "payload": 1}', id="text-plain"),
    pytest.param("text/plain;charset=UTF-8", b'{"workflow": "chain"}', id="text-plain-charset"),
    pytest.param("application/x-www-form-urlencoded", b"workflow=chain", id="form"),
    pytest.param("multipart/form-data; boundary=x", b"--x--\r\n", id="multipart"),
    pytest.param(None, b'{"workflow": "chain"}', id="no-content-type"),
    pytest.param("application/jsonp", b'{"workflow": "chain"}', id="almost-json"),
]


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(("content_type", "data"), BROWSER_BODIES)
def test_a_state_changing_request_that_is_not_json_is_415(
    secured: FlaskClient,
    runtime: EmbeddedRuntime,
    paused: str,
    route: Route,
    content_type: str | None,
    data: bytes,
) -> None:
    """What a web page can send any site without asking: never read, even with the
    credential (a cookie-like credential is exactly what CSRF rides on)."""
    before = database(runtime)
    headers = dict(CREDENTIALS[route.auth])
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = secured.open(
        concrete_path(route, paused), method=route.method, data=data, headers=headers
    )
    assert error_code(response, 415) == "unsupported_media_type"
    assert database(runtime) == before


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP "])
def test_a_body_with_a_content_encoding_is_415_compressed_or_not(
    secured: FlaskClient, runtime: EmbeddedRuntime, paused: str, route: Route, encoding: str
) -> None:
    """A plain body declared compressed would be taken for what it is not; a compressed one
    would be refused as malformed JSON: either way the answer says what to do."""
    before = database(runtime)
    headers = {
        **CREDENTIALS[route.auth],
        "Content-Type": "application/json",
        "Content-Encoding": encoding,
    }
    response = secured.open(
        concrete_path(route, paused), method=route.method, data=b"{}", headers=headers
    )
    assert error_code(response, 415) == "unsupported_media_type"
    assert "send it uncompressed" in response.get_json()["error"]["message"]
    assert database(runtime) == before


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_a_browser_request_without_body_or_type_is_415(
    secured: FlaskClient, runtime: EmbeddedRuntime, paused: str, route: Route
) -> None:
    """``fetch(url, {method: "POST", mode: "no-cors"})`` sends no body and no type, but an
    Origin: it would cancel a run with an empty (optional) body."""
    before = database(runtime)
    headers = {**CREDENTIALS[route.auth], "Origin": "https://attacker.example"}
    response = secured.open(concrete_path(route, paused), method=route.method, headers=headers)
    assert error_code(response, 415) == "unsupported_media_type"
    assert database(runtime) == before


def test_json_is_accepted_with_parameters_and_an_empty_body_without_a_type(
    secured: FlaskClient, runtime: EmbeddedRuntime, paused: str
) -> None:
    started = secured.post(
        "/runs",
        data=b'{"workflow": "chain"}',
        headers={**CALLER, "Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert started.status_code == 201
    # No body and no type from a program (no Origin): the defaults, as before.
    cancelled = secured.post(f"/runs/{paused}/cancel", headers=CALLER)
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "failed"


def test_authentication_still_comes_first(secured: FlaskClient) -> None:
    response = secured.post("/runs", data=b"workflow=chain", content_type="text/plain")
    assert error_code(response, 401) == "unauthorized"


# -- DNS rebinding: only the names the server is reached by --------------------------------


@pytest.fixture
def guarded(runtime: EmbeddedRuntime) -> HttpApi:
    return HttpApi(
        runtime.service,
        authenticate=LoopbackOnly(),
        hosts=AllowedHosts.bound_to("127.0.0.1", ["api.example.test", "pinned.test:9000"]),
    )


@pytest.fixture
def served(guarded: HttpApi) -> Iterator[LocalServer]:
    with LocalServer(guarded) as server:
        yield server


def raw_request(server: LocalServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (nothing a client library would fix) and read the answer."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # the server closed with part of the request unread
            pass
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    return int(status_line.split()[1]), headers, body


def get(server: LocalServer, path: str, host: str | None, extra: bytes = b"") -> Any:
    host_line = b"" if host is None else b"Host: " + host.encode() + b"\r\n"
    request = b"GET " + path.encode() + b" HTTP/1.1\r\n" + host_line + extra
    return raw_request(server, request + b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "localhost.:{port}",
        "127.0.0.1:1",
        "localhost",  # port 80, not the server's
        "api.example.test.evil:{port}",
        "pinned.test:9001",
    ],
)
def test_a_host_the_server_is_not_reached_by_is_421(
    served: LocalServer, runtime: EmbeddedRuntime, host: str
) -> None:
    before = database(runtime)
    port = served.url.rsplit(":", 1)[1]
    status, headers, body = get(served, "/runs", host.format(port=port))
    assert status == 421, body
    assert headers["content-type"] == "application/json"
    assert b'"misdirected_request"' in body
    assert database(runtime) == before


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}",
     "api.example.test", "api.example.test:{port}", "pinned.test:9000"],
)  # fmt: skip
def test_the_bound_names_and_the_configured_ones_are_answered(
    served: LocalServer, host: str
) -> None:
    port = served.url.rsplit(":", 1)[1]
    status, _, body = get(served, "/runs", host.format(port=port))
    assert status == 200, body


@pytest.mark.parametrize("host", [None, "bad host", "a:b:c", "x:99999", "x:\u0665"])
def test_a_missing_or_malformed_host_is_400(served: LocalServer, host: str | None) -> None:
    status, headers, body = get(served, "/healthz", host)
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert b'"bad_request"' in body


def test_a_server_bound_to_every_interface_answers_loopback_names_and_configured_ones() -> None:
    hosts = AllowedHosts.bound_to("0.0.0.0", ["server.lan"]).on_port(8080)
    for allowed in ("127.0.0.1:8080", "localhost:8080", "server.lan:8080", "server.lan:1234"):
        assert hosts.allows(allowed), allowed
    for refused in ("0.0.0.0:8080", "10.0.0.7:8080", "localhost:8081"):
        assert not hosts.allows(refused), refused
    assert AllowedHosts.parse(["*"]).allows("anything:1")
    assert AllowedHosts.bound_to("::1").on_port(80).allows("[::1]")
    assert "[::1]:80" in AllowedHosts.bound_to("::1").on_port(80).describe()


@pytest.mark.parametrize("entry", ["bad host", "a/b", "host:0", "host:port", "x:123456"])
def test_a_malformed_allowed_host_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="host name"):
        AllowedHosts.parse([entry])


def test_host_names_and_loopback_addresses() -> None:
    assert split_host("Example.COM:8080") == ("example.com", 8080)
    assert split_host("[::1]") == ("[::1]", None)
    assert split_host("x:\uff15") is None
    for loopback in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"):
        assert is_loopback(loopback), loopback
    for remote in ("0.0.0.0", "10.0.0.1", "::", "example.com", "localhost.evil", ""):
        assert not is_loopback(remote), remote


# -- no key: only this machine -------------------------------------------------------------


@pytest.mark.parametrize("peer", ["10.0.0.7", "192.168.1.20", "2001:db8::1", "::ffff:10.0.0.7"])
def test_without_a_key_a_peer_on_another_machine_is_403(
    guarded: HttpApi, runtime: EmbeddedRuntime, paused: str, peer: str
) -> None:
    before = database(runtime)
    with create_wsgi_app(guarded).test_client() as client:
        environ = {"REMOTE_ADDR": peer}
        for method, path in [
            ("GET", "/runs"),
            ("POST", "/runs"),
            ("POST", f"/runs/{paused}/cancel"),
        ]:
            response = client.open(
                path, method=method, json={"workflow": "chain"}, environ_base=environ
            )
            assert error_code(response, 403) == "forbidden"
            assert "REFLUXO_API_KEY" in response.get_json()["error"]["message"]
        assert client.get("/healthz", environ_base=environ).status_code == 200
    assert database(runtime) == before


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_without_a_key_this_machine_is_served(guarded: HttpApi, peer: str) -> None:
    with create_wsgi_app(guarded).test_client() as client:
        response = client.get("/runs", environ_base={"REMOTE_ADDR": peer})
        assert response.status_code == 200


# -- what the server refuses before the API sees it: JSON too ------------------------------


def test_a_request_line_over_64_kib_is_a_json_414(served: LocalServer) -> None:
    status, headers, body = get(served, "/runs?cursor=" + "a" * 70_000, "127.0.0.1")
    assert status == 414
    assert headers["content-type"] == "application/json"
    assert b'"uri_too_long"' in body


def test_a_long_url_under_the_limit_reaches_the_api(served: LocalServer) -> None:
    port = served.url.rsplit(":", 1)[1]
    status, headers, _ = get(served, "/runs/" + "a" * 60_000, f"127.0.0.1:{port}")
    assert status == 404
    assert headers["content-type"] == "application/json"


def test_a_header_over_64_kib_is_a_json_431(served: LocalServer) -> None:
    status, headers, body = get(
        served, "/healthz", "127.0.0.1", b"X-Big: " + b"a" * 70_000 + b"\r\n"
    )
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert b'"headers_too_large"' in body


@pytest.mark.parametrize(
    ("request_line", "status", "code"),
    [
        (b"GET /healthz HTTP/2.0\r\n", 505, b'"http_version_not_supported"'),
        (b"GET /healthz HTTP/1.1 extra\r\n", 400, b'"bad_request"'),
        (b"GET /healthz FTP/1.1\r\n", 400, b'"bad_request"'),
    ],
)
def test_an_unreadable_request_line_is_answered_as_json(
    served: LocalServer, request_line: bytes, status: int, code: bytes
) -> None:
    answer = raw_request(served, request_line + b"Host: 127.0.0.1\r\n\r\n")
    assert answer[0] == status
    assert answer[1]["content-type"] == "application/json"
    assert code in answer[2]
