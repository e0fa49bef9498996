"""The fuzzing harness: the real WSGI app, its published OpenAPI document, and the checks.

Every generated request goes through :meth:`FuzzTarget.execute`, which

- snapshots the SQLite database (every row of ``runs``, ``results``, ``deliveries`` and
  ``definitions``), sends the request to the Flask app in process (schemathesis' WSGI
  transport) and snapshots it again;
- runs schemathesis' checks: no 5xx; status code, content type, headers and body as the
  document says; schema-valid requests accepted, schema-violating ones rejected; declared
  authentication enforced; undocumented methods refused with a correct ``Allow`` header;
- and checks the API's own promises: every error is ``{"error": {"code", "message"}}`` with
  a non-empty code and message, and a rejected request (any 4xx) changed no row at all.

The app enforces the document's security schemes (an API key for the public endpoints, a
bearer token standing in for the scheduler's OIDC identity on ``/tasks/step``), and
schemathesis is given both credentials, so generated requests get past authentication
unless schemathesis deliberately leaves the credentials out.

Each example starts from the same seeded database: runs with known ids in each interesting
state (paused, active, completed, retrying, cancelled, a long completed loop). Before a
request is sent, :meth:`FuzzTarget.steer` may swap a generated run id, workflow name,
version or cursor for one that exists, so generated requests reach real runs; it only
swaps a value that already satisfies the document for another that does, so a
schema-violating request stays schema-violating.

The stateful phase (:func:`run_stateful_phase`) is schemathesis' state machine, built from
the document's links (start -> get -> resume -> cancel, and those schemathesis infers):
each scenario starts from the seeded database and chains requests on the run ids earlier
answers returned; between requests, the steps a request scheduled are delivered, as the
local server's workers would.

The app is served with the local server's own guards: it answers only the loopback
``Host`` names (the test client's ``localhost``) and state-changing requests only as
``application/json``.

``bench/fuzz.py`` imports this module for the long run.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlsplit

import hypothesis
import pytest
import schemathesis
from flask import Flask, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from schemathesis import Case, GenerationMode, Response
from schemathesis.auths import AuthContext, set_on_generated_case
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from refluxo.api.auth import ApiKeyCheck
from refluxo.api.contract import Route
from refluxo.api.hosts import AllowedHosts
from refluxo.api.http import HttpApi
from refluxo.api.openapi import openapi_document
from refluxo.api.routes import ROUTES
from refluxo.api.server import create_wsgi_app
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.model import SnapshotStatus
from refluxo.runtime.errors import Unauthorized
from tests.support.apps import build_app
from tests.support.clock import FakeClock

Draw = Callable[[st.SearchStrategy[Any]], Any]
State = dict[str, list[tuple[Any, ...]]]
Operation: TypeAlias = APIOperation[Any, Any, Any, Any]
AnyCase: TypeAlias = Case[Operation]

FUZZ_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}
"""Hypothesis settings every fuzzing loop shares (callers add examples, phases, seeds)."""

API_KEY = "fuzz-api-key-0123456789"
STEP_TOKEN = "fuzz-scheduler-token"
MAX_BODY_BYTES = 4096
"""Small, so that 413 is reachable."""

TABLES: dict[str, str] = {
    "runs": "run_id",
    "results": "run_id, seq",
    "deliveries": "name",
    "definitions": "version",
    "child_ends": "parent_id, version, idx",
    "child_inputs": "parent_id, version, digest, idx",
    "join_counts": "parent_id, version",
    "deliverer": "id",
}
"""Every table of the embedded database, with its primary key (the snapshot's order)."""

SEEDED_RUNS: dict[str, str] = {
    "seed-paused": "approval, paused at 'ask'",
    "seed-active": "chain, started, its first step not delivered yet",
    "seed-completed": "chain, completed",
    "seed-retrying": "flaky, failed its first attempt, retry due later",
    "seed-cancelled": "approval, cancelled while paused",
    "seed-loop": "loop, completed: a timeline of 42 entries",
}
FRESH_RUN_IDS = ("fresh-1", "fresh-2")
"""Ids no seeded run has: a start may create them, later requests of a sequence find them."""
KNOWN_RUN_IDS = (*SEEDED_RUNS, *FRESH_RUN_IDS)
WORKFLOWS = ("chain", "approval", "flaky", "loop", "unstarted")
"""The test app's workflows, plus one no seeded run uses (its definition is not stored)."""

CHECKS: tuple[CheckFunction, ...] = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
)
"""Schemathesis' checks run on every response (the custom ones are in :meth:`execute`)."""

MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)

_RUN_ID_PARAMETER = openapi_document(ROUTES)["paths"]["/runs/{runId}"]["get"]["parameters"][0]
_RUN_ID_SCHEMA: dict[str, Any] = _RUN_ID_PARAMETER["schema"]

_OFTEN = st.integers(0, 2).map(bool)
"""True two times in three (and shrinks towards False: the generated value)."""


_TARGET_STATUSES: dict[str, tuple[str, ...]] = {
    "POST /runs/{runId}/resume": ("paused",),
    "POST /runs/{runId}/cancel": ("active", "paused", "error"),
    "GET /runs/{runId}": tuple(status.value for status in SnapshotStatus),
}


def authenticate_step(request: Request) -> None:
    """Stands in for the scheduler's OIDC check: one bearer token is the scheduler."""
    if request.headers.get("Authorization", "") != f"Bearer {STEP_TOKEN}":
        raise Unauthorized("only the scheduler may deliver steps")


def _conforms(schema: dict[str, Any], value: Any) -> bool:
    """Whether ``value`` satisfies ``schema``, as schemathesis reads it.

    JSON Schema's "$" ends the string, Python's also matches before a final newline: a
    string with a newline never counts as matching a pattern.
    """
    if isinstance(value, str) and "\n" in value and "pattern" in schema:
        return False
    return bool(Draft4Validator(schema).is_valid(value))


def _swap(
    body: dict[str, Any],
    fields: dict[str, Any],
    name: str,
    choices: st.SearchStrategy[Any],
    draw: Draw,
) -> None:
    """Often replace a body field that conforms to the document by another that does."""
    if name in body and _conforms(fields[name], body[name]) and draw(_OFTEN):
        body[name] = draw(choices)


def body_fields(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    """The property schemas of an operation's JSON body (``$ref`` to a component resolved)."""
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    properties: dict[str, Any] = schema["properties"]
    return properties


def can_negate(operation: dict[str, Any]) -> bool:
    """Whether an operation of the document has schema-violating requests (declares input)."""
    return any(operation.get(key) for key in ("parameters", "requestBody", "security"))


def encode_cursor(created_at: Any, run_id: Any) -> str:
    """A cursor in the embedded store's format, with any content (for crafted cursors)."""
    raw = json.dumps([created_at, run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def read_state(runtime: EmbeddedRuntime) -> State:
    """Every row of every table, in primary-key order."""
    connection = runtime.db.connection()
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert {name for (name,) in tables} == set(TABLES), "a new table: add it to TABLES"
    return {
        table: [tuple(row) for row in connection.execute(f"SELECT * FROM {table} ORDER BY {key}")]
        for table, key in TABLES.items()
    }


def restore_state(runtime: EmbeddedRuntime, state: State) -> None:
    """Make the database hold exactly ``state`` (one transaction)."""
    with runtime.db.write() as connection:
        for table, rows in state.items():
            connection.execute(f"DELETE FROM {table}")
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def describe_change(before: State, after: State) -> str:
    lines = []
    for table in TABLES:
        old, new = set(before[table]), set(after[table])
        for row in sorted(old - new, key=repr)[:3]:
            lines.append(f"  {table} lost    {str(row)[:300]}")
        for row in sorted(new - old, key=repr)[:3]:
            lines.append(f"  {table} gained  {str(row)[:300]}")
    return "\n".join(lines)


def error_body_problems(response: Response) -> list[str]:
    """What is wrong with an error response's body (nothing for a 2xx/3xx)."""
    if response.status_code < 400:
        return []
    content_type = ";".join(response.headers.get("content-type", []))
    if not content_type.startswith("application/json"):
        return [f"error response with content type {content_type!r}: {response.content[:200]!r}"]
    try:
        body = response.json()
    except ValueError:
        return [f"error response whose body is not JSON: {response.content[:200]!r}"]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(error, dict):
        return [f"error body is not {{'error': {{...}}}}: {body!r}"[:400]]
    problems = []
    for name in ("code", "message"):
        if not isinstance(error.get(name), str) or not error[name].strip():
            problems.append(f"error.{name} missing or empty: {body!r}"[:400])
    return problems


def _seed(runtime: EmbeddedRuntime, clock: FakeClock) -> None:
    """The runs of :data:`SEEDED_RUNS`, created a millisecond apart (distinct cursors)."""
    service = runtime.service
    scheduler = runtime.scheduler
    service.start("approval", None, run_id="seed-paused")
    clock.advance(1)
    service.start("chain", {"n": 1}, run_id="seed-completed")
    clock.advance(1)
    service.start("flaky", {"attempts": "few"}, run_id="seed-retrying")
    clock.advance(1)
    service.start("approval", None, run_id="seed-cancelled")
    clock.advance(1)
    service.start("loop", None, run_id="seed-loop")
    scheduler.drain()
    service.cancel("seed-cancelled", "seeded as cancelled")
    clock.advance(1)
    service.start("chain", {"n": 2}, run_id="seed-active")
    expected = {
        "seed-paused": SnapshotStatus.PAUSED,
        "seed-active": SnapshotStatus.ACTIVE,
        "seed-completed": SnapshotStatus.COMPLETED,
        "seed-retrying": SnapshotStatus.ERROR,
        "seed-cancelled": SnapshotStatus.FAILED,
        "seed-loop": SnapshotStatus.COMPLETED,
    }
    actual = {run_id: service.get(run_id).status for run_id in expected}
    assert actual == expected, actual
    assert service.get("seed-loop").result_count == 42


@dataclass(frozen=True)
class Exchange:
    """One request and what came of it, as the known issues see it."""

    method: str
    path: str
    query: dict[str, Any]
    response: Response
    before: State
    after: State

    @property
    def content_type(self) -> str:
        return ";".join(self.response.headers.get("content-type", []))


@dataclass(frozen=True)
class KnownIssue:
    """A failure whose cause is outside the HTTP handler and its document.

    Reported rather than fixed here. A response that fails the checks only because of a
    known issue is counted under its name: the test slice lets it pass (every other check
    still applies to every other response), ``bench/fuzz.py`` fails on it like on any
    failure. ``test_known_issues_still_reproduce`` fails once the cause is fixed, as a
    reminder to delete the entry.
    """

    name: str
    cause: str
    matches: Callable[[Exchange], bool]


KNOWN_ISSUES: tuple[KnownIssue, ...] = ()
"""Responses known to be wrong, let through while their cause is fixed elsewhere (none now).

The four the fuzzer found (an HTML 405 for unrouted methods, an HTML 404 for a newline in a
path, a 500 for a cursor beyond 64 bits, a definition stored by a start refused with 409)
are fixed; ``test_formerly_known_issues_stay_fixed`` replays them.
"""


@dataclass
class FuzzTarget:
    """The app under test, its document as schemathesis loaded it, and the tallies.

    ``strict``: raise on the first failing response (tests, so Hypothesis shrinks it);
    otherwise collect every failure in :attr:`failures` and carry on (the benchmark).
    """

    runtime: EmbeddedRuntime
    clock: FakeClock
    api: HttpApi
    app: Flask
    schema: BaseSchema
    seeded: State
    seeded_now: int
    cursors: tuple[str, ...]
    strict: bool = True
    tally: Counter[tuple[str, int]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)
    known_examples: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        directory: Path,
        *,
        strict: bool = True,
        seed: int | None = None,
        routes: tuple[Route, ...] = ROUTES,
    ) -> FuzzTarget:
        """Seed a fresh database in ``directory`` and load the document the app serves.

        ``seed``: schemathesis' seed; ``routes``: the table served, a handler swapped for a
        misbehaving one (to check that the harness notices).
        """
        clock = FakeClock()
        app = build_app(clock)
        app.workflow("unstarted", {"nodes": [{"id": "only", "type": "echo"}], "edges": []})
        runtime = EmbeddedRuntime(app, directory / "fuzz.db", workers=0, synchronous="OFF")
        api = HttpApi(
            runtime.service,
            authenticate=ApiKeyCheck(API_KEY),
            authenticate_step=authenticate_step,
            authenticate_reconcile=authenticate_step,  # the same "oidc" scheme, one token
            max_body_bytes=MAX_BODY_BYTES,
            routes=routes,
            hosts=AllowedHosts.bound_to("127.0.0.1"),
        )
        wsgi_app = create_wsgi_app(api)
        _seed(runtime, clock)
        cursors = []
        for limit in (1, 2, 4):
            cursor: str | None = None
            while True:
                page = runtime.service.list(None, limit, cursor)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
                cursors.append(cursor)
        config_data: dict[str, Any] = {
            "auth": {"openapi": {"apiKey": {"api_key": API_KEY}, "oidc": {"bearer": STEP_TOKEN}}},
            # A schema-violating body may also be refused for its size (413, documented for
            # every body): a rejection like the others (not_a_server_error still forbids 5xx).
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [
                        *("400", "401", "403", "404", "405", "406", "409", "413", "415"),
                        *("422", "428", "429", "5xx"),
                    ]
                }
            },
        }
        if seed is not None:
            config_data["seed"] = seed
        config = schemathesis.Config.from_dict(config_data)
        # The document as the running app publishes it. Loaded as a dict rather than with
        # `from_wsgi`, which would leave its own location (GET /openapi.json) unfuzzed.
        with wsgi_app.test_client() as client:
            served = client.get("/openapi.json")
            assert served.status_code == 200
            assert served.mimetype == "application/json"
            document = served.get_json()
        schema = schemathesis.openapi.from_dict(document, config=config)
        schema.app = wsgi_app
        return cls(
            runtime=runtime,
            clock=clock,
            api=api,
            app=wsgi_app,
            schema=schema,
            seeded=read_state(runtime),
            seeded_now=clock.now,
            cursors=tuple(dict.fromkeys(cursors)),
            strict=strict,
        )

    def close(self) -> None:
        self.runtime.stop()

    # -- generation --------------------------------------------------------------------

    def operations(self) -> list[Operation]:
        return [
            result.ok() for result in self.schema.get_all_operations() if isinstance(result, Ok)
        ]

    def operation(self, label: str) -> Operation:
        for operation in self.operations():
            if operation.label == label:
                return operation
        raise KeyError(label)

    def coverage_cases(self, operation: Operation) -> Iterator[AnyCase]:
        """Schemathesis' deterministic coverage phase: boundaries, missing parts, methods."""
        context = AuthContext(operation=operation, app=operation.app)
        for case in self.schema.iter_coverage_cases(
            operation,
            generation_modes=list(MODES),
            generation_config=self.schema.config.generation_for(operation=operation),
        ):
            set_on_generated_case(case, context, None)
            yield case

    def steer(self, case: AnyCase, draw: Draw) -> None:
        """Often point a generated request at real runs (see the module doc).

        Run ids are swapped for known ones, versions for the named run's current version
        (so resumes and step deliveries can succeed), cursors for issued or crafted ones.
        Reading the current version makes the request depend on the state, which is the
        same whenever Hypothesis replays the example: each starts from the seeded state.
        Only a value that conforms to its schema in the document is swapped, and always
        for one that conforms too.
        """
        label = case.operation.label
        raw = case.operation.definition.raw
        parameters = case.path_parameters
        if parameters and _conforms(_RUN_ID_SCHEMA, parameters.get("runId")):
            choice = draw(st.sampled_from(("keep", "known", "target")))
            if choice != "keep":
                parameters["runId"] = draw(self._run_ids(label if choice == "target" else None))
        body = case.body
        if isinstance(body, dict) and "requestBody" in raw:
            fields = body_fields(self.schema.raw_schema, raw)
            run_id = parameters.get("runId") if parameters else None
            if label == "POST /runs":
                _swap(body, fields, "workflow", st.sampled_from(WORKFLOWS), draw)
                _swap(body, fields, "runId", st.sampled_from(KNOWN_RUN_IDS), draw)
            elif label == "POST /tasks/step":
                self._steer_delivery(body, fields, draw)
                run_id = body.get("runId")
            if "version" in fields and isinstance(run_id, str):
                _swap(body, fields, "version", self._versions(run_id), draw)
        if label == "GET /runs" and "cursor" in case.query:
            choice = draw(st.sampled_from(("keep", "issued", "crafted")))
            if choice == "issued" and self.cursors:
                case.query["cursor"] = draw(st.sampled_from(self.cursors))
            elif choice == "crafted":
                case.query["cursor"] = encode_cursor(
                    draw(st.integers() | st.sampled_from((self.seeded_now, 0))),
                    draw(st.text(max_size=20) | st.sampled_from(KNOWN_RUN_IDS)),
                )

    def _run_ids(self, label: str | None) -> st.SearchStrategy[str]:
        """Known ids, or the ids of the runs ``label`` can act on (paused ones for a resume,
        those that have not ended for a cancel, any for a read)."""
        statuses = _TARGET_STATUSES.get(label or "", ())
        if statuses:
            marks = ", ".join("?" * len(statuses))
            rows = self.runtime.db.connection().execute(
                f"SELECT run_id FROM runs WHERE status IN ({marks}) ORDER BY run_id", statuses
            )
            ids = [row[0] for row in rows]
            if ids:
                return st.sampled_from(ids)
        return st.sampled_from(KNOWN_RUN_IDS)

    def _steer_delivery(self, body: dict[str, Any], fields: dict[str, Any], draw: Draw) -> None:
        """A step delivery for a known run, or exactly one the scheduler has pending."""
        choice = draw(st.sampled_from(("keep", "known", "pending")))
        pending = self.runtime.scheduler.pending()
        if choice == "pending" and pending and _conforms(fields["runId"], body.get("runId")):
            delivery = draw(st.sampled_from(pending))
            body["runId"] = delivery.run_id
            if _conforms(fields["version"], body.get("version")):
                body["version"] = delivery.version
            if "dueAt" not in body or _conforms(fields["dueAt"], body["dueAt"]):
                body["dueAt"] = delivery.due_at
        elif choice != "keep":
            _swap(body, fields, "runId", st.sampled_from(KNOWN_RUN_IDS), draw)

    def _versions(self, run_id: str) -> st.SearchStrategy[int]:
        record = self.runtime.store.load_run(run_id)
        current = record.version if record is not None else 0
        return st.sampled_from((current, current, current + 1, max(current - 1, 0)))

    # -- execution ---------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the seeded database and clock."""
        restore_state(self.runtime, self.seeded)
        self.clock.now = self.seeded_now

    def execute(self, case: AnyCase) -> Response:
        """Send ``case`` to the app and check everything (see the module doc)."""
        before = read_state(self.runtime)
        response = case.call()
        after = read_state(self.runtime)
        path = case.operation.path
        self.tally[(f"{case.method.upper()} {path}", response.status_code)] += 1
        if path == "/tasks/step" and response.status_code == 200:
            self.outcomes[response.json()["outcome"]] += 1

        problems: list[str] = []
        excluded: list[CheckFunction] = []
        cursor = case.query.get("cursor") if case.operation.label == "GET /runs" else None
        if case.operation.label == "POST /tasks/reconcile" and isinstance(case.body, dict):
            cursor = case.body.get("cursor")  # the overdue runs' cursor: opaque as well
        positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
        if positive and cursor is not None and cursor not in self.cursors:
            # A cursor is opaque: one the server never issued may be refused (the documented
            # 400), but only as such.
            excluded.append(positive_data_acceptance)
            if response.status_code == 400 and "cursor" not in response.text_lossy():
                problems.append(f"400 for an unissued cursor, not about it: {response.text}")
        try:
            case.validate_response(
                response,
                checks=list(CHECKS),
                excluded_checks=excluded,
                transport_kwargs={"app": self.app},
            )
        except FailureGroup as group:
            problems.append(str(group).strip())
        problems.extend(self._own_problems(response, before, after))
        exchange = Exchange(
            case.method.upper(), case.formatted_path, dict(case.query), response, before, after
        )
        self._report(
            f"{case.method.upper()} {case.formatted_path} query={case.query!r}"
            + (f" body={case.body!r:.300}" if case.body is not NOT_SET else "")
            + f"\nreproduce: {case.as_curl_command()}",
            exchange,
            problems,
        )
        return response

    def send_raw(
        self, method: str, path: str, *, data: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        """Send a request schemathesis cannot express (malformed JSON, a huge body...).

        Only the API's own promises are checked: no 5xx, a proper error body, and no
        change for a rejection. A body is sent as ``application/json`` unless ``headers``
        name a ``Content-Type``.
        """
        before = read_state(self.runtime)
        url = urlsplit(path)
        sent = dict(headers or {})
        if data and not any(name.lower() == "content-type" for name in sent):
            sent["Content-Type"] = "application/json"
        with self.app.test_client() as client:
            response = Response.from_wsgi(client.open(path, method=method, data=data, headers=sent))
        after = read_state(self.runtime)
        self.tally[(f"{method} {path}", response.status_code)] += 1
        problems = self._own_problems(response, before, after)
        if response.status_code >= 500:
            problems.append("server error")
        exchange = Exchange(method, url.path, dict(parse_qsl(url.query)), response, before, after)
        self._report(f"{method} {path} data={data[:200]!r}", exchange, problems)
        return response

    def _own_problems(self, response: Response, before: State, after: State) -> list[str]:
        problems = error_body_problems(response)
        if 400 <= response.status_code < 500 and before != after:
            problems.append(
                f"rejected with {response.status_code}, yet the database changed:\n"
                + describe_change(before, after)
            )
        return problems

    def _report(self, request: str, exchange: Exchange, problems: list[str]) -> None:
        if not problems:
            return
        response = exchange.response
        answer = f"-> {response.status_code} {response.text_lossy()[:300]}"
        report = "\n".join((request, answer, *problems))
        for issue in KNOWN_ISSUES:
            if issue.matches(exchange):
                self.known[issue.name] += 1
                self.known_examples.setdefault(issue.name, report)
                return
        self.failures.append(report)
        if self.strict:
            raise AssertionError(report)


def fuzz_operation(
    target: FuzzTarget,
    operation: Operation,
    mode: GenerationMode,
    *,
    max_examples: int,
    derandomize: bool = False,
    seed: int | None = None,
) -> None:
    """Hypothesis-driven requests to one operation, each from the seeded state."""

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(max_examples=max_examples, derandomize=derandomize, **FUZZ_SETTINGS)
    def run(case: AnyCase, data: st.DataObject) -> None:
        target.reset()
        target.steer(case, data.draw)
        target.execute(case)

    if seed is not None:
        run = hypothesis.seed(seed)(run)
    run()


def fuzz_sequences(
    target: FuzzTarget,
    *,
    max_examples: int,
    max_length: int = 6,
    derandomize: bool = False,
    seed: int | None = None,
) -> None:
    """Sequences of requests to any operations, in one state: later ones see earlier effects.

    Three requests in four are schema-valid, so the sequence mostly builds state (a start,
    a step delivered, a resume, a read) with invalid requests in between.
    """
    operations = target.operations()
    strategies: list[st.SearchStrategy[AnyCase]] = []
    for operation in operations:
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        strategies.extend([positive] * 3)
        if can_negate(operation.definition.raw):
            strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @given(data=st.data())
    @settings(max_examples=max_examples, derandomize=derandomize, **FUZZ_SETTINGS)
    def run(data: st.DataObject) -> None:
        target.reset()
        for _ in range(data.draw(st.integers(2, max_length), label="length")):
            case = data.draw(st.sampled_from(strategies).flatmap(lambda s: s), label="request")
            target.steer(case, data.draw)
            target.execute(case)

    if seed is not None:
        run = hypothesis.seed(seed)(run)
    run()


def run_stateful_phase(
    target: FuzzTarget,
    *,
    max_examples: int,
    step_count: int = 8,
    derandomize: bool = False,
    seed: int | None = None,
) -> None:
    """Schemathesis' state machine on the document's links, scenario by scenario.

    Each scenario starts from the seeded database. A start's workflow name is often
    swapped for a registered one (only when the generated name is valid, as
    :meth:`FuzzTarget.steer` does, with a choice derived from the request itself so that a
    replay makes the same one); after each request the steps it scheduled are delivered.
    Every response goes through :meth:`FuzzTarget.execute`.
    """
    base = target.schema.as_state_machine()
    workflow_schema = body_fields(
        target.schema.raw_schema, target.operation("POST /runs").definition.raw
    )["workflow"]

    class Machine(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            target.reset()

        def step(self, input: StepInput) -> StepOutput:
            case = input.case
            body = case.body
            if case.operation.label == "POST /runs" and isinstance(body, dict):
                choice = random.Random(repr(sorted(body.items(), key=str))).randrange(4)
                if choice and _conforms(workflow_schema, body.get("workflow")):
                    body["workflow"] = WORKFLOWS[choice % len(WORKFLOWS)]
            response = target.execute(case)
            target.runtime.scheduler.drain()
            return StepOutput(response, case)

    settings_ = settings(
        max_examples=max_examples,
        stateful_step_count=step_count,
        derandomize=derandomize,
        **FUZZ_SETTINGS,
    )
    machine: type[Any] = Machine if seed is None else hypothesis.seed(seed)(Machine)
    machine.run(settings=settings_)


def run_coverage_phase(target: FuzzTarget) -> None:
    """Every case of schemathesis' coverage phase, each from the seeded state."""
    for operation in target.operations():
        for case in target.coverage_cases(operation):
            target.reset()
            target.execute(case)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[FuzzTarget]:
    target = FuzzTarget.build(tmp_path)
    yield target
    target.close()
