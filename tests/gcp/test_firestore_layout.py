"""FirestoreStore beyond the contract: document layout, sizes, limits and transient faults.

Runs against the real Firestore emulator. Faults are injected by wrapping the client's
transactions (a commit that fails before, or after, reaching the emulator); the emulator
itself is never mocked.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import firestore

from refluxo.backends.firestore_store import (
    MAX_VALUE_BYTES,
    RECENT_COMMITS,
    FirestoreStore,
    node_key,
)
from refluxo.errors import LimitExceededError
from refluxo.model import NodeResult
from refluxo.runtime.errors import BadRequest, StoreError
from refluxo.runtime.protocols import AppendedResult, RunRecord, StepCommit
from tests.conftest import FakeClock
from tests.contract.test_store_contract import new_record, step
from tests.gcp.google_errors import google_error


class InstrumentedClient:
    """A real ``firestore.Client`` whose transactions report, and may fail, their commits.

    ``writes`` holds the number of documents each successful commit wrote. ``faults`` is
    consumed one entry per commit call: ``("before", error)`` fails without reaching the
    emulator; ``("after", error)`` lets the commit apply, then loses its reply.
    """

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self.writes: list[int] = []
        self.commit_calls = 0
        self.faults: list[tuple[str, Exception]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transaction(self, **options: Any) -> Any:
        transaction: Any = self._client.transaction(**options)
        real_commit: Callable[[], Any] = transaction._commit

        def commit() -> Any:
            self.commit_calls += 1
            when, error = self.faults.pop(0) if self.faults else ("", None)
            if when == "before" and error is not None:
                raise error
            writes = len(transaction._write_pbs)
            result = real_commit()
            self.writes.append(writes)
            if when == "after" and error is not None:
                raise error
            return result

        transaction._commit = commit
        return transaction


@pytest.fixture
def instrumented(firestore_client: firestore.Client) -> InstrumentedClient:
    return InstrumentedClient(firestore_client)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def store(
    instrumented: InstrumentedClient, firestore_prefix: str, clock: FakeClock, sleeps: list[float]
) -> FirestoreStore:
    return FirestoreStore(
        instrumented,  # type: ignore[arg-type]
        prefix=firestore_prefix,
        clock=clock,
        max_attempts=3,
        backoff_ms=1,
        sleep=sleeps.append,
    )


def appending(record: RunRecord, node_id: str, outputs: list[Any]) -> StepCommit:
    """A commit of ``outputs`` for ``node_id``, the only node of the run's history."""
    return StepCommit(
        run_id=record.run_id,
        expected_version=record.version,
        snapshot=record.snapshot.model_copy(update={"version": record.version + 1}),
        results=[
            AppendedResult(
                seq=record.result_count + offset,
                node_id=node_id,
                node_index=record.result_count + offset,
                result=NodeResult(output=output, timestamp=5, attempt=1),
            )
            for offset, output in enumerate(outputs)
        ],
    )


def created(store: FirestoreStore, run_id: str = "run") -> RunRecord:
    assert store.create_run(new_record(run_id)).committed
    return loaded(store, run_id)


def loaded(store: FirestoreStore, run_id: str = "run") -> RunRecord:
    record = store.load_run(run_id)
    assert record is not None
    return record


def head_data(store: FirestoreStore, run_id: str) -> dict[str, Any]:
    data = store.client.collection(f"{store.prefix}_runs").document(run_id).get().to_dict()
    assert data is not None
    return data


def count_docs(collection: Any) -> int:
    return int(collection.count().get()[0][0].value)


# -- layout ---------------------------------------------------------------------------------


def test_a_commit_writes_o1_documents_and_the_head_stays_small(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    record = created(store)
    assert instrumented.writes == [1]  # the head
    assert store.commit(step(store, record, [("n", 0)])).committed
    assert instrumented.writes[-1] == 3  # head + result + node counter

    early_head = 0
    for batch in range(50):  # 50 commits x 10 results: 500 more results
        assert store.commit(appending(loaded(store), "n", list(range(10)))).committed
        assert instrumented.writes[-1] == 1 + 10 + 1
        if batch == RECENT_COMMITS:  # the list of recent commit tokens is full now
            early_head = len(json.dumps(head_data(store, "run")))

    record = loaded(store)
    assert record.result_count == 501
    assert store.commit(step(store, record, [("n", "last")])).committed
    assert instrumented.writes[-1] == 3  # the same as with an empty history

    late_head = len(json.dumps(head_data(store, "run")))
    assert late_head < 2_000
    assert late_head - early_head < 16  # only counters moved, by a few digits

    run = store.client.collection(f"{store.prefix}_runs").document("run")
    assert count_docs(run.collection("results")) == 502
    assert count_docs(run.collection("nodes")) == 1
    counter = run.collection("nodes").document(node_key("n")).get().to_dict()
    assert counter == {"nodeId": "n", "count": 502, "firstSeq": 0}
    result = run.collection("results").document(f"{500:012d}").get().to_dict()
    assert result is not None
    assert (result["seq"], result["nodeId"], result["nodeIndex"]) == (500, "n", 500)

    history = store.history("run")
    assert history.count("n") == 502
    assert history.get("n", 0).output == 0
    assert history.get("n", 500).output == 9
    assert history.get("n", 501).output == "last"
    assert [r.output for r in history.all("n")[-3:]] == [8, 9, "last"]
    assert [e.seq for e in store.timeline("run", after_seq=499, limit=2)] == [500, 501]


def test_node_ids_with_slashes_and_counters_per_node(store: FirestoreStore) -> None:
    record = created(store)
    assert store.commit(step(store, record, [("a/b", 1), ("../c", 2), ("a/b", 3)])).committed
    history = store.history("run")
    assert history.count("a/b") == 2
    assert history.get("a/b", 1).output == 3
    assert [r.output for r in history.all("../c")] == [2]
    assert history.node_ids() == ["a/b", "../c"]
    with pytest.raises(IndexError):
        history.get("a/b", 2)


# -- sizes ------------------------------------------------------------------------------------


def test_a_result_over_the_limit_is_refused_clearly_before_writing(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    record = created(store)
    commits_before = instrumented.commit_calls
    with pytest.raises(LimitExceededError, match=r"node 'huge' is 950\d{3} bytes"):
        store.commit(step(store, record, [("huge", "x" * 950_000)]))
    # Bytes, not characters: 460,000 two-byte characters are 920,000 bytes.
    with pytest.raises(LimitExceededError, match="node 'wide'"):
        store.commit(step(store, record, [("wide", "é" * 460_000)]))
    assert instrumented.commit_calls == commits_before
    assert store.load_run("run") == record


def test_a_result_just_under_the_limit_fits_in_a_firestore_document(
    store: FirestoreStore,
) -> None:
    record = created(store)
    text = "x" * (MAX_VALUE_BYTES - 100)
    assert len(NodeResult(output=text, timestamp=5, attempt=1).model_dump_json()) < MAX_VALUE_BYTES
    assert store.commit(step(store, record, [("big", text)])).committed
    assert store.history("run").get("big", 0).output == text


def test_oversized_heads_and_commits_are_refused(store: FirestoreStore) -> None:
    big_input = new_record("fat")
    big_input = RunRecord(**{**_fields(big_input), "input": {"blob": "x" * 950_000}})
    with pytest.raises(LimitExceededError, match="head of run 'fat'"):
        store.create_run(big_input)
    assert store.load_run("fat") is None

    record = created(store)
    many = [("n", "x" * 800_000)] * 12  # 9.6 MB in one transaction
    with pytest.raises(LimitExceededError, match="smaller step budget"):
        store.commit(step(store, record, many))


def _fields(record: RunRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in RunRecord.__slots__}


# -- transient faults ---------------------------------------------------------------------


def test_transient_commit_failures_are_retried_and_applied_once(
    store: FirestoreStore, instrumented: InstrumentedClient, sleeps: list[float]
) -> None:
    record = created(store)
    instrumented.faults = [
        ("before", google_error(exceptions.ServiceUnavailable, "unavailable")),
        ("before", google_error(exceptions.InternalServerError, "internal")),
    ]
    result = store.commit(step(store, record, [("a", 1)]))
    assert result.committed
    assert not result.scheduled
    assert len(sleeps) == 2  # backed off between attempts
    loaded = store.load_run("run")
    assert loaded is not None
    assert (loaded.version, loaded.result_count) == (1, 1)
    assert store.history("run").count("a") == 1


def test_a_commit_whose_reply_is_lost_is_reported_committed_not_a_conflict(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    record = created(store)
    instrumented.faults = [("after", google_error(exceptions.DeadlineExceeded, "reply lost"))]
    result = store.commit(step(store, record, [("a", 1)]))
    assert result.committed
    assert result.record is not None
    assert result.record.version == 1
    assert store.history("run").all("a") == [NodeResult(output=1, timestamp=5, attempt=1)]
    # A genuinely stale commit is still a conflict.
    assert not store.commit(step(store, record, [("a", 2)])).committed


def test_a_create_whose_reply_is_lost_is_reported_created(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    instrumented.faults = [("after", google_error(exceptions.ServiceUnavailable, "reply lost"))]
    result = store.create_run(new_record("r"))
    assert result.committed
    assert not store.create_run(new_record("r")).committed


def test_persistent_contention_surfaces_as_store_error(
    store: FirestoreStore, instrumented: InstrumentedClient, sleeps: list[float]
) -> None:
    record = created(store)
    calls = instrumented.commit_calls
    instrumented.faults = [("before", google_error(exceptions.Aborted, "contention"))] * 100
    with pytest.raises(StoreError, match="failed after 3 attempts") as raised:
        store.commit(step(store, record, [("a", 1)]))
    assert _chain_has(raised.value, exceptions.Aborted)
    # The client retried each transaction 3 times, the store made 3 transactions.
    assert instrumented.commit_calls - calls == 9
    assert len(sleeps) == 2
    instrumented.faults = []
    assert store.load_run("run") == record
    assert store.history("run").count("a") == 0


def test_permanent_errors_are_not_retried(
    store: FirestoreStore, instrumented: InstrumentedClient, sleeps: list[float]
) -> None:
    record = created(store)
    calls = instrumented.commit_calls
    instrumented.faults = [("before", google_error(exceptions.PermissionDenied, "no"))]
    with pytest.raises(exceptions.PermissionDenied):
        store.commit(step(store, record, [("a", 1)]))
    assert instrumented.commit_calls - calls == 1
    assert sleeps == []


def _chain_has(error: BaseException, kind: type[BaseException]) -> bool:
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
    return False


# -- listing and definitions -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !!",
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(b'["1000", "r1"]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_malformed_cursor_is_a_bad_request(store: FirestoreStore, cursor: str) -> None:
    with pytest.raises(BadRequest, match="invalid cursor"):
        store.list_runs(cursor=cursor)


def test_definitions_round_trip_nested_arrays(store: FirestoreStore) -> None:
    body = {"nodes": [{"id": "a", "data": {"matrix": [[1, 2], [3, [4]]]}}], "edges": []}
    store.put_definition("v9", "wf", body)
    assert store.get_definition("v9") == body
    with pytest.raises(LimitExceededError, match="definition v10"):
        store.put_definition("v10", "wf", {"blob": "x" * 950_000})


def test_user_json_with_nested_arrays_round_trips(store: FirestoreStore) -> None:
    record = created(store)
    output = {"rows": [[1, [2, [3]]], []], "none": None}
    commit = StepCommit(
        run_id="run",
        expected_version=0,
        snapshot=record.snapshot.model_copy(update={"version": 1}),
        results=[AppendedResult(0, "a", 0, NodeResult(output=output, timestamp=1))],
    )
    assert store.commit(commit).committed
    assert store.history("run").get("a", 0).output == output
