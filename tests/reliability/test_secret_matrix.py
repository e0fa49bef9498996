"""Secrets in globals never reach a stored byte, in any encoding, through any channel.

Secrets with quotes, backslashes, newlines, non-ASCII characters, a PEM key and a service
account's JSON leave executors every way they can: as output values and keys, bytes, pydantic
models, dataclasses, objects only ``repr`` can show, base64, exception texts (``repr``- and
JSON-escaped), validation errors, retries, pauses, a failure reason, and a delivery that
crashed before its commit. Afterwards every byte of the SQLite files (database and WAL) and
every Firestore document is searched for every encoding of every secret.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import itertools
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore
from pydantic import BaseModel

from refluxo import RedactionPlugin, StepResult, TransientError
from refluxo.backends.gcp.firestore import FirestoreStore
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.redaction import _encodings
from refluxo.runtime import App, Dispatcher, RunService, current_step
from tests.support.clock import FakeClock
from tests.support.stored import ListScheduler, dump_collection

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----\n"
)
SERVICE_ACCOUNT = json.dumps(
    {
        "type": "service_account",
        "client_email": "robot@acme.iam.gserviceaccount.com",
        "private_key": PEM,
    }
)
SECRETS = {
    "quoted": "qu\"ot'ed-s3cret",
    "backslash": "back\\slash\\s3cret",
    "newline": "multi\nline\ns3cret",
    "unicode": "ünïcødé-s3crét-✓",
    "pem": PEM,
    "service_account": SERVICE_ACCOUNT,
}


class Holder(BaseModel):
    value: str


@dataclasses.dataclass
class Box:
    value: str


class Opaque:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __repr__(self) -> str:
        return f"Opaque({self.secret})"


WRAP_PREFIX = b"x" * 50
"""Puts a secret's base64 across the first line break (column 76)."""


Leak = Callable[[str], Any]

NO_JSON_FORM = frozenset({"opaque", "not_utf8"})
"""Channels whose output has no JSON form: their node fails (saying where, never what), so
each is a run of its own, and the secret must be nowhere all the same."""

CHANNELS: dict[str, Leak] = {
    "value": lambda s: {"echo": s, "nested": [{"deep": f"prefix {s} suffix"}]},
    "key": lambda s: {s: 1},
    "bytes": lambda s: s.encode(),
    "model": lambda s: Holder(value=s),
    "dataclass": lambda s: Box(value=s),
    "opaque": lambda s: {"object": Opaque(s)},
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "json_text": lambda s: json.dumps({"s": s}),
    # Encodings an attacker found: the secret inside a longer base64 (HTTP Basic auth),
    # bytes that are not UTF-8, default URL quoting, lowercase escapes, base32, hex, case.
    "basic_auth": lambda s: "Basic " + base64.b64encode(b"u:" + s.encode()).decode(),
    "not_utf8": lambda s: b"\xff" + s.encode(),
    "quoted_url": lambda s: "https://x.test/?q=" + urllib.parse.quote(s),
    "lower_escapes": lambda s: re.sub(
        "%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(s, safe="")
    ),
    "base32": lambda s: base64.b32encode(b"abc" + s.encode()).decode(),
    "hex": lambda s: "0x" + s.encode().hex(),
    "upper": lambda s: s.upper(),
    "one_line": lambda s: max(s.splitlines(), key=len),
    # More an attack found: bytes shown by str(), base64 wrapped at 76 columns (the secret
    # across a line break, as base64.encodebytes and MIME write it), HTML escaping, more
    # case changes.
    "bytes_repr": lambda s: str(s.encode()),
    "base64_lines": lambda s: base64.encodebytes(WRAP_PREFIX + s.encode()).decode(),
    "mime_lines": lambda s: CHANNELS["base64_lines"](s).replace("\n", "\r\n"),
    "html": lambda s: html.escape(s),
    "html_text": lambda s: html.escape(s, quote=False),
    "capitalize": lambda s: s.capitalize(),
    "title": lambda s: s.title(),
    "swapcase": lambda s: s.swapcase(),
    # And more: JSON that escapes "/" (PHP's json_encode), a mixed case beside an "İ"
    # (whose lower case is two characters), every character escaped (\u, HTML numbers).
    "slash_escaped_json": lambda s: json.dumps({"s": s}).replace("/", "\\/"),
    "dotted_capital_i": lambda s: "İstanbul " + s.swapcase(),
    "u_escaped": lambda s: "".join(f"\\u{ord(c):04x}" for c in s),
    "html_numeric": lambda s: "".join(f"&#{ord(c)};" for c in s),
}


def wrapped_base64_pieces(raw: bytes) -> list[str]:
    """The base64 characters of ``WRAP_PREFIX + raw`` that only ``raw`` determines, as
    base64.encodebytes writes them: one piece per line."""
    encoded = base64.b64encode(WRAP_PREFIX + raw).decode()
    begin, end = len(WRAP_PREFIX), len(WRAP_PREFIX) + len(raw)
    own = [i for i in range(len(encoded)) if 6 * i // 8 >= begin and (6 * i + 5) // 8 < end]
    pieces: dict[int, str] = {}
    for i in own:
        pieces[i // 76] = pieces.get(i // 76, "") + encoded[i]
    return list(pieces.values())


def emitted_core(channel: str, secret: str) -> list[bytes]:
    """What the channel itself would write of ``secret``, as bytes to look for in the store
    (independent of how redaction spells encodings)."""
    raw = secret.encode()
    cores = {
        "basic_auth": [base64.b64encode(b"u:" + raw).decode()[4:]],
        "not_utf8": [base64.b64encode(b"\xff" + raw).decode()[4:]],
        "quoted_url": [urllib.parse.quote(secret)],
        "lower_escapes": [CHANNELS["lower_escapes"](secret)],
        "base32": [base64.b32encode(b"abc" + raw).decode()[8:]],
        "hex": [raw.hex()],
        "upper": [secret.upper()],
        "one_line": [max(secret.splitlines(), key=len)],
        "bytes_repr": [str(raw)[2:-1]],
        "base64_lines": wrapped_base64_pieces(raw),
        "mime_lines": wrapped_base64_pieces(raw),
        "html": [html.escape(secret)],
        "html_text": [html.escape(secret, quote=False)],
        "capitalize": [secret.capitalize()],
        "title": [secret.title()],
        "swapcase": [secret.swapcase()],
        "slash_escaped_json": [json.dumps(secret)[1:-1].replace("/", "\\/")],
        "dotted_capital_i": [secret.swapcase()],
        "u_escaped": [CHANNELS["u_escaped"](secret)],
        "html_numeric": [CHANNELS["html_numeric"](secret)],
    }.get(channel, [])
    # As written, and as a JSON string holds it (a store keeps JSON text).
    spelled = {
        spelling
        for core in cores
        for spelling in (core, json.dumps(core)[1:-1], json.dumps(core, ensure_ascii=False)[1:-1])
    }
    return [core.encode() for core in spelled if len(core) >= 8]


def matrix_app(clock: FakeClock, crash_once: list[bool]) -> App:
    app = App(
        clock=clock,
        globals=lambda: {"secrets": dict(SECRETS)},
        plugins=[RedactionPlugin()],
    )

    @app.node()
    def leak(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        secret = globals["secrets"][data["secret"]]
        return StepResult(CHANNELS[data["channel"]](secret))

    @app.node(retry_policy={"maxAttempts": 1, "interval": 10})
    def raise_repr(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        secret = globals["secrets"][data["secret"]]
        if current_step().attempt == 1:
            raise KeyError(secret)  # str(KeyError) is the repr: quotes and escapes
        return StepResult({"recovered": True})

    @app.node(retry_policy={"maxAttempts": 1, "interval": 10})
    def raise_json(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError("payload was " + json.dumps({"k": globals["secrets"][data["secret"]]}))

    @app.node(metadata={"input": {"type": "object", "properties": {"n": {"type": "integer"}}}})
    def typed(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    @app.node()
    def ask(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True)
        return StepResult({"after_pause": globals["secrets"][data["secret"]]})

    @app.node()
    def crashes(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if crash_once and crash_once.pop():
            raise TransientError("the store went away after the side effect")
        return StepResult({"side_effect": globals["secrets"][data["secret"]]})

    for name in SECRETS:
        for channel in NO_JSON_FORM:
            node = {
                "id": f"leak_{channel}",
                "type": "leak",
                "data": {"secret": name, "channel": channel},
            }
            app.workflow(f"refused-{name}-{channel}", _chain([node]))
        nodes = [
            *(
                {
                    "id": f"leak_{channel}",
                    "type": "leak",
                    "data": {"secret": name, "channel": channel},
                }
                for channel in CHANNELS
                if channel not in NO_JSON_FORM
            ),
            {"id": "repr", "type": "raise_repr", "data": {"secret": name}},
            {"id": "typed", "type": "typed", "data": {"n": "{{ globals.secrets." + name + " }}"}},
        ]
        app.workflow(f"leaks-{name}", _chain(nodes))
        app.workflow(
            f"pauses-{name}",
            _chain(
                [
                    {"id": "crash", "type": "crashes", "data": {"secret": name}},
                    {"id": "ask", "type": "ask", "data": {"secret": name}},
                    {"id": "json", "type": "raise_json", "data": {"secret": name}},
                ]
            ),
        )
    return app


def _chain(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodes": nodes,
        "edges": [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)],
    }


def forms() -> Iterator[tuple[str, bytes]]:
    for name, secret in SECRETS.items():
        for form in _encodings(secret):
            if len(form) >= 8:
                yield name, form.encode("utf-8", "surrogatepass")


def assert_clean(blob: bytes, where: str) -> None:
    for name, form in forms():
        assert form not in blob, f"secret {name!r} found in {where} as {form[:40]!r}"
    for name, secret in SECRETS.items():
        for channel in CHANNELS:
            for core in emitted_core(channel, secret):
                assert core not in blob, f"secret {name!r} found in {where} via {channel}"


def drive(service: RunService, deliver_due: Callable[[], int], clock: FakeClock) -> None:
    """Deliver until nothing is left, advancing time past retries; resume every pause."""
    for _ in range(500):
        if deliver_due():
            continue
        paused = [r for r in service.list(limit=200).runs if r.status == "paused"]
        for record in paused:
            service.resume(record.run_id, {"ok": True})
        if not paused and all(r.status.is_terminal for r in service.list(limit=200).runs):
            return
        clock.advance(50)
    raise AssertionError("the runs did not settle")


def start_all(service: RunService) -> None:
    for name in SECRETS:
        for channel in NO_JSON_FORM:
            service.start(f"refused-{name}-{channel}", None, run_id=f"refused-{name}-{channel}")
        service.start(f"leaks-{name}", None, run_id=f"leaks-{name}")
        service.start(f"pauses-{name}", None, run_id=f"pauses-{name}")


def assert_outcomes(service: RunService) -> None:
    for name in SECRETS:
        for channel in NO_JSON_FORM:
            refused = service.get(f"refused-{name}-{channel}")
            assert refused.status == "failed"
            assert "which has no JSON form" in refused.snapshot.metadata["failedReason"]
        leaks = service.get(f"leaks-{name}")
        assert leaks.status == "failed"  # the typed node refuses a string for "n"
        assert "Validation failed" in leaks.snapshot.metadata["failedReason"]
        pauses = service.get(f"pauses-{name}")
        assert pauses.status == "failed"
        assert "[REDACTED]" in pauses.snapshot.metadata["failedReason"]
        outputs = {e.node_id: e.result for e in service.timeline(f"leaks-{name}", limit=100)}
        assert outputs["leak_value"].output["echo"] == "[REDACTED]"


def test_no_encoding_of_any_secret_in_any_sqlite_byte(tmp_path: Path, clock: FakeClock) -> None:
    runtime = EmbeddedRuntime(
        matrix_app(clock, [True]), tmp_path / "m.db", workers=0, synchronous="NORMAL"
    )
    try:
        start_all(runtime.service)
        drive(runtime.service, runtime.scheduler.drain, clock)
        assert_outcomes(runtime.service)
    finally:
        runtime.stop()
    files = sorted(tmp_path.glob("m.db*"))
    assert files
    for file in files:
        assert_clean(file.read_bytes(), file.name)


@pytest.mark.timeout(300)
def test_no_encoding_of_any_secret_in_any_firestore_document(
    firestore_client: firestore.Client, firestore_prefix: str, clock: FakeClock
) -> None:
    app = matrix_app(clock, [True])
    store = FirestoreStore(firestore_client, prefix=firestore_prefix, clock=clock)
    scheduler = ListScheduler()
    service = RunService(Dispatcher(app, store, scheduler))
    try:
        start_all(service)

        def deliver_due() -> int:
            ready = [d for d in scheduler.queue if d.due_at <= clock.now]
            scheduler.queue = [d for d in scheduler.queue if d.due_at > clock.now]
            for delivery in ready:
                try:
                    service.deliver(delivery)
                except TransientError:
                    scheduler.queue.append(delivery)  # not acknowledged: delivered again
            return len(ready)

        drive(service, deliver_due, clock)
        assert_outcomes(service)
    finally:
        service.close()
    for collection in ("runs", "definitions"):
        reference = firestore_client.collection(f"{firestore_prefix}_{collection}")
        for document in dump_collection(reference):
            blob = json.dumps(document, default=str, ensure_ascii=False).encode()
            assert_clean(blob, f"{collection}/{document['id']}")


def test_a_failure_reason_the_runtime_writes_is_masked_too(
    tmp_path: Path, clock: FakeClock
) -> None:
    """No plugin hook sees an error handler's own failure: the last look before the
    commit masks it."""
    from refluxo import ErrorHandler

    secret = SECRETS["quoted"]

    class Leaky(ErrorHandler):
        def should_retry(
            self, error: BaseException, attempt: int, node: Any, definition: Any
        ) -> bool:
            raise RuntimeError(f"cannot decide for token {secret!r}")

    app = App(
        clock=clock,
        globals=lambda: {"token": secret},
        plugins=[RedactionPlugin()],
        error_handler=Leaky(),
    )

    @app.node()
    def boom(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError("boom")

    app.workflow("w", {"nodes": [{"id": "a", "type": "boom"}]})
    runtime = EmbeddedRuntime(app, tmp_path / "r.db", workers=0, synchronous="NORMAL")
    try:
        run = runtime.service.start("w").record
        runtime.scheduler.drain()
        reason = runtime.service.get(run.run_id).snapshot.metadata["failedReason"]
        assert "cannot decide for token" in reason
        assert "[REDACTED]" in reason
    finally:
        runtime.stop()
    for file in sorted(tmp_path.glob("r.db*")):
        for form in _encodings(secret):
            assert form.encode() not in file.read_bytes(), (file.name, form)
