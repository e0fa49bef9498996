"""The local server belongs to its owner: the deployment ``refluxo serve`` and ``main.py``
build on the embedded default (``build_deployment``), served over real HTTP.

Each test is a case of the issue that made this so: forged step deliveries, cross-site
requests from a web page, DNS rebinding, a listener open to the network without a key.
"""

from __future__ import annotations

import gc
import http.client
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from refluxo import StepResult
from refluxo.api.server import LocalServer
from refluxo.host.compose import Deployment, build_deployment
from refluxo.host.settings import ConfigurationError, EmbeddedSettings
from refluxo.runtime import App

KEY = "owner-key-0123456789abcdef"


class Payments:
    """A payment-like node's side effects, counted."""

    def __init__(self) -> None:
        self.charges = 0
        self._lock = threading.Lock()

    def charge(self) -> None:
        with self._lock:
            self.charges += 1


@pytest.fixture
def payments() -> Payments:
    return Payments()


@pytest.fixture
def app(payments: Payments) -> App:
    app = App()

    @app.node()
    def charge(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        payments.charge()
        return StepResult({"charged": data["amount"]})

    app.workflow("pay", {"nodes": [{"id": "charge", "type": "charge", "data": {"amount": 42}}]})
    return app


def settings(tmp_path: Path, **changes: Any) -> EmbeddedSettings:
    """The embedded default as ``refluxo serve`` reads it, without delivery workers (so a
    run waits at version 0 for the deliveries the tests forge)."""
    base = EmbeddedSettings(app="(test)", database=tmp_path / "serve.db", workers=0, api_key=None)
    return replace(base, **changes)


@pytest.fixture
def served(tmp_path: Path, app: App) -> Iterator[tuple[Deployment, LocalServer]]:
    deployment = build_deployment(settings(tmp_path), app)
    server = LocalServer(deployment.api, "127.0.0.1", 0).start()
    try:
        yield deployment, server
    finally:
        server.stop()
        deployment.close()


def request(
    server: LocalServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(
        "127.0.0.1" if host == "0.0.0.0" else host, int(port), timeout=30
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        assert response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def rows(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("runs", "results", "deliveries", "definitions")
        }


JSON = {"Content-Type": "application/json"}


def test_forged_deliveries_with_distinct_hops_add_nothing(
    served: tuple[Deployment, LocalServer], tmp_path: Path
) -> None:
    """300 unauthenticated step calls with distinct hops added 303 rows."""
    deployment, server = served
    run = deployment.service.start("pay").record
    before = rows(tmp_path / "serve.db")
    for hop in range(300):
        body = {"runId": run.run_id, "version": 0, "dueAt": 2**40, "hop": hop}
        status, answer = request(server, "POST", "/tasks/step", json.dumps(body).encode(), JSON)
        assert status == 403, answer
        assert answer["error"]["code"] == "forbidden"
    assert rows(tmp_path / "serve.db") == before


def test_concurrent_forged_deliveries_run_nothing(
    served: tuple[Deployment, LocalServer], payments: Payments
) -> None:
    """20 concurrent forged deliveries ran a payment-like node 9 times."""
    deployment, server = served
    run = deployment.service.start("pay").record
    body = json.dumps({"runId": run.run_id, "version": 0}).encode()
    statuses: list[int] = []

    def forge() -> None:
        statuses.append(request(server, "POST", "/tasks/step", body, JSON)[0])

    threads = [threading.Thread(target=forge) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [403] * 20
    assert payments.charges == 0
    assert deployment.service.get(run.run_id).version == 0


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/runs", b'{"workflow": "pay"}', "text/plain"),
        ("/runs", b'{"workflow": "pay"}', "text/plain;charset=UTF-8"),
        ("/runs/{run}/cancel", b"reason=csrf", "application/x-www-form-urlencoded"),
        ("/runs/{run}/cancel", b"--x\r\n\r\nx\r\n--x--\r\n", "multipart/form-data; boundary=x"),
    ],
)
def test_a_web_page_cannot_start_or_cancel_a_run(
    served: tuple[Deployment, LocalServer],
    tmp_path: Path,
    payments: Payments,
    path: str,
    body: bytes,
    content_type: str,
) -> None:
    """A text/plain body started a run; an x-www-form-urlencoded one cancelled a run."""
    deployment, server = served
    run = deployment.service.start("pay").record
    before = rows(tmp_path / "serve.db")
    headers = {"Content-Type": content_type, "Origin": "https://attacker.example"}
    status, answer = request(server, "POST", path.format(run=run.run_id), body, headers)
    assert status == 415, answer
    assert answer["error"]["code"] == "unsupported_media_type"
    assert rows(tmp_path / "serve.db") == before
    assert deployment.service.get(run.run_id).status == "active"


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:{port}", "rebind.example:{port}"]
)
def test_a_rebound_name_is_not_served(served: tuple[Deployment, LocalServer], host: str) -> None:
    """Any Host header was served (DNS rebinding)."""
    _, server = served
    port = server.url.rsplit(":", 1)[1]
    for method, path, body in [
        ("GET", "/runs", None),
        ("GET", "/healthz", None),
        ("POST", "/runs", b'{"workflow": "pay"}'),
    ]:
        headers = {**JSON, "Host": host.format(port=port)}
        status, answer = request(server, method, path, body, headers)
        assert status == 421, answer
        assert answer["error"]["code"] == "misdirected_request"


def test_the_owner_is_served_on_the_bound_names(served: tuple[Deployment, LocalServer]) -> None:
    _, server = served
    port = server.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        status, answer = request(
            server, "POST", "/runs", b'{"workflow": "pay"}', {**JSON, "Host": host}
        )
        assert status == 201, answer
    assert request(server, "GET", "/runs", headers={"Host": f"localhost:{int(port) + 1}"})[0] == 421


def test_configured_names_are_served(tmp_path: Path, app: App) -> None:
    deployment = build_deployment(
        settings(tmp_path, allowed_hosts=("refluxo.lan", "proxy.lan:443")), app
    )
    try:
        with LocalServer(deployment.api) as server:
            for host, status in [
                ("refluxo.lan", 200),
                ("refluxo.lan:1234", 200),
                ("proxy.lan:443", 200),
                ("proxy.lan", 421),
            ]:
                assert request(server, "GET", "/runs", headers={"Host": host})[0] == status, host
    finally:
        deployment.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_without_a_key_the_server_refuses_to_listen_beyond_this_machine(
    tmp_path: Path, app: App, host: str
) -> None:
    with pytest.raises(ConfigurationError, match="REFLUXO_API_KEY"):
        build_deployment(settings(tmp_path, host=host), app)


def test_with_a_key_every_route_but_health_needs_it_and_the_step_route_too(
    tmp_path: Path, app: App, payments: Payments
) -> None:
    deployment = build_deployment(settings(tmp_path, api_key=KEY, host="0.0.0.0"), app)
    try:
        with LocalServer(deployment.api, "0.0.0.0", 0) as server:
            port = server.url.rsplit(":", 1)[1]
            local = {**JSON, "Host": f"127.0.0.1:{port}"}
            run = deployment.service.start("pay").record
            body = json.dumps({"runId": run.run_id, "version": 0}).encode()
            assert request(server, "POST", "/tasks/step", body, local)[0] == 401
            assert request(server, "GET", "/runs", headers=local)[0] == 401
            assert request(server, "GET", "/healthz", headers=local)[0] == 200
            keyed = {**local, "X-API-Key": KEY}
            assert request(server, "POST", "/tasks/step", body, keyed) == (
                200,
                {"outcome": "committed", "steps": 1},
            )
            assert payments.charges == 1
            # Bound to every interface: another machine's name needs REFLUXO_ALLOWED_HOSTS.
            elsewhere = {**keyed, "Host": f"192.0.2.10:{port}"}
            assert request(server, "GET", "/runs", headers=elsewhere)[0] == 421
    finally:
        deployment.close()


def test_a_deployment_puts_what_it_loaded_out_of_the_collector_s_reach(
    tmp_path: Path, app: App
) -> None:
    """The app's workflows are walked by no full collection once the deployment is built."""
    gc.unfreeze()
    workflows = app.workflows
    deployment = build_deployment(settings(tmp_path), app)
    try:
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(workflows)
        assert not any(tracked is workflows for tracked in gc.get_objects())
    finally:
        deployment.close()
        gc.unfreeze()
