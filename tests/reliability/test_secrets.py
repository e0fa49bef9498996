"""Secrets passed as globals never reach a stored byte: SQLite files and Firestore documents.

The workflow uses its secrets the way real ones do: in expressions that build a node's
input, inside an executor that calls an "API", in an exception message, across a pause and a
retry. Afterwards every byte the store kept is scanned.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from google.cloud import firestore

from refluxo import RedactionPlugin, StepResult
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App, current_step
from refluxo.runtime.dispatcher import Dispatcher
from refluxo.runtime.service import RunService
from tests.support.clock import FakeClock
from tests.support.stored import ListScheduler, dump_collection

TOKEN = "tok_live_7Gq2LxWm9Pz"
PASSWORD = "correct-horse-battery-staple"
SECRETS = (TOKEN, PASSWORD)


def secret_app(clock: FakeClock) -> App:
    app = App(
        clock=clock,
        globals=lambda: {"token": TOKEN, "db": {"password": PASSWORD}},
        plugins=[RedactionPlugin()],
    )

    @app.node(retry_policy={"maxAttempts": 2, "interval": 10})
    def call_api(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        assert data["authorization"] == f"Bearer {TOKEN}"  # the secret reached the input
        if current_step().attempt == 1:
            raise ConnectionError(f"timeout calling with {data['authorization']}")
        return StepResult({"status": 200, "echo": data["authorization"], "password": PASSWORD})

    @app.node()
    def approve(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True)
        return StepResult({"approved": payload["ok"], "by": globals["db"]["password"][:5]})

    app.workflow(
        "uses-secrets",
        {
            "start": "start",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "call",
                    "type": "call_api",
                    "data": {
                        "authorization": "Bearer {{ globals.token }}",
                        "n": "{{ nodes.start.output.n }}",
                    },
                },
                {"id": "ask", "type": "approve"},
            ],
            "edges": [{"source": "start", "target": "call"}, {"source": "call", "target": "ask"}],
        },
    )
    return app


def assert_no_secret(blob: bytes, where: str) -> None:
    for secret in SECRETS:
        assert secret.encode() not in blob, f"{secret!r} found in {where}"


def test_no_secret_in_any_sqlite_byte(tmp_path: Path, clock: FakeClock) -> None:
    app = secret_app(clock)
    runtime = EmbeddedRuntime(app, tmp_path / "secrets.db", workers=0, synchronous="NORMAL")
    try:
        run = runtime.service.start("uses-secrets", {"n": 1}).record
        runtime.scheduler.drain()
        clock.advance(10)
        runtime.scheduler.drain()
        runtime.service.resume(run.run_id, {"ok": True})
        runtime.scheduler.drain()
        record = runtime.service.get(run.run_id)
        assert record.status == "completed"
        outputs = {e.node_id: e.result for e in runtime.store.timeline(run.run_id)}
        assert "[REDACTED]" in (outputs["call"].output or {})["echo"]
    finally:
        runtime.stop()
    files = sorted(tmp_path.glob("secrets.db*"))
    assert files
    for file in files:
        assert_no_secret(file.read_bytes(), file.name)


def test_no_secret_in_any_firestore_document(
    firestore_client: firestore.Client, firestore_prefix: str, clock: FakeClock
) -> None:
    app = secret_app(clock)
    store = FirestoreStore(firestore_client, prefix=firestore_prefix, clock=clock)
    scheduler = ListScheduler()
    service = RunService(Dispatcher(app, store, scheduler))
    run = service.start("uses-secrets", {"n": 2}).record

    def drain() -> None:
        while scheduler.queue:
            delivery = scheduler.queue.pop(0)
            if delivery.due_at > clock.now:
                clock.now = delivery.due_at
            asyncio.run(service.dispatcher.deliver(delivery))

    drain()
    service.resume(run.run_id, {"ok": False})
    drain()
    assert store.load_run(run.run_id).status == "completed"  # type: ignore[union-attr]
    documents = []
    for name in ("runs", "definitions"):
        documents += dump_collection(firestore_client.collection(f"{firestore_prefix}_{name}"))
    assert len(documents) > 5
    assert_no_secret(json.dumps(documents, default=str).encode(), "Firestore")
