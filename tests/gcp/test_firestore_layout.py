"""FirestoreStore beyond the contract: document layout, sizes, limits and transient faults.

Runs against the real Firestore emulator. Faults are injected by wrapping the client's
batches (a commit that fails before, or after, reaching the emulator, or
that lands late); the emulator itself is never mocked. RPCs are counted where the client
sends them, so "no read" means no read reached the emulator.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import firestore

from refluxo import StepResult
from refluxo.backends.gcp.firestore.layout import (
    MAX_VALUE_BYTES,
    RECENT_COMMITS,
    HeadRevision,
    node_counts_of,
    result_document_id,
    run_document_id,
)
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.errors import LimitExceededError, TransientError
from refluxo.model import NodeResult
from refluxo.runtime import App, Dispatcher, Outcome, RunService
from refluxo.runtime.errors import BadRequest
from refluxo.runtime.ports import AppendedResult, Delivery, Payload, RunRecord, StepCommit
from tests.support.clock import FakeClock
from tests.support.firestore_rpcs import count_rpcs
from tests.support.google_errors import google_error
from tests.support.stores import assert_history_consistent, history_of, new_record, step


class InstrumentedClient:
    """A real ``firestore.Client`` whose batches report and fail commits.

    ``writes`` holds the number of documents each applied commit wrote, ``kinds`` its kind
    (``"batch"``: the store opens no transaction, which ``rpcs`` would show). ``faults`` is
    consumed one entry per commit call: ``("before", error)`` fails without reaching the
    emulator; ``("after", error)`` lets the commit apply, then loses its reply; ``("late",
    error)`` fails now and applies the commit just before the next commit call (a request
    that reached the service after its caller gave up on it). ``rpcs`` counts every RPC the
    client sends (documents read through any reference count too: they share the wrapped
    client).
    """

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self.writes: list[int] = []
        self.kinds: list[str] = []
        self.commit_calls = 0
        self.faults: list[tuple[str, Exception]] = []
        self.rpcs: Counter[str] = count_rpcs(client)
        self._late: list[Callable[[], Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _faulty(self, kind: str, pending: Any, real_commit: Callable[..., Any]) -> Any:
        def commit(*args: Any, **kwargs: Any) -> Any:
            while self._late:
                self._late.pop(0)()
            self.commit_calls += 1
            when, error = self.faults.pop(0) if self.faults else ("", None)
            writes = len(pending._write_pbs)

            def apply() -> Any:
                result = real_commit(*args, **kwargs)
                self.writes.append(writes)
                self.kinds.append(kind)
                return result

            if error is not None and when == "before":
                raise error
            if error is not None and when == "late":
                self._late.append(apply)
                raise error
            result = apply()
            if error is not None and when == "after":
                raise error
            return result

        return commit

    def before_next_commit(self, action: Callable[[], Any]) -> None:
        """Run ``action`` just before the next commit call reaches the emulator."""
        self._late.append(action)

    def batch(self) -> Any:
        batch: Any = self._client.batch()
        batch.commit = self._faulty("batch", batch, batch.commit)
        return batch


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


def counts_of(record: RunRecord) -> dict[str, int]:
    """The per-node result counts the record's token carries (the head as read)."""
    token = record.token
    assert isinstance(token, HeadRevision)
    return node_counts_of(token.data)


def at_revision(record: RunRecord, results: list[tuple[str, Any]], **changes: Any) -> StepCommit:
    """What the dispatcher commits: numbered from ``counts_of(record)``, at its revision."""
    counts = dict(counts_of(record))
    appended = []
    for offset, (node_id, output) in enumerate(results):
        index = counts.get(node_id, 0)
        counts[node_id] = index + 1
        result = NodeResult(output=output, timestamp=5, attempt=1)
        appended.append(AppendedResult(record.result_count + offset, node_id, index, result))
    return StepCommit(
        run_id=record.run_id,
        expected_version=record.version,
        snapshot=record.snapshot.model_copy(update={"version": record.version + 1, **changes}),
        results=appended,
        expected_token=record.token,
    )


def created(store: FirestoreStore, run_id: str = "run") -> RunRecord:
    assert store.create_run(new_record(run_id)).committed
    return loaded(store, run_id)


def loaded(store: FirestoreStore, run_id: str = "run") -> RunRecord:
    record = store.load_run(run_id)
    assert record is not None
    return record


def head_ref(store: FirestoreStore, run_id: str = "run") -> Any:
    return store.client.collection(f"{store.prefix}_runs").document(run_document_id(run_id))


def head_data(store: FirestoreStore, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] | None = head_ref(store, run_id).get().to_dict()
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
    assert instrumented.writes[-1] == 2  # head (node counts included) + result

    early_head = 0
    for batch in range(50):  # 50 commits x 10 results: 500 more results
        assert store.commit(appending(loaded(store), "n", list(range(10)))).committed
        assert instrumented.writes[-1] == 1 + 10
        if batch == RECENT_COMMITS:  # the list of recent commit tokens is full now
            early_head = len(json.dumps(head_data(store, "run")))

    record = loaded(store)
    assert record.result_count == 501
    assert store.commit(step(store, record, [("n", "last")])).committed
    assert instrumented.writes[-1] == 2  # the same as with an empty history

    late_head = len(json.dumps(head_data(store, "run")))
    assert late_head < 2_000
    assert late_head - early_head < 16  # only counts moved, by a few digits
    assert head_data(store, "run")["nodeCounts"] == '[["n",502]]'
    assert counts_of(loaded(store)) == {"n": 502}

    run = head_ref(store)
    assert count_docs(run.collection("results")) == 502
    assert count_docs(run.collection("nodes")) == 0  # no per-node documents any more
    result = run.collection("results").document(result_document_id("n", 500)).get().to_dict()
    assert result is not None
    assert (result["seq"], result["nodeId"], result["nodeIndex"]) == (500, "n", 500)

    history = history_of(store, "run")
    assert history.count("n") == 502
    assert history.get("n", 0).output == 0
    assert history.get("n", 500).output == 9
    assert history.get("n", 501).output == "last"
    assert [r.output for r in history.all("n")[-3:]] == [8, 9, "last"]
    assert [e.seq for e in store.timeline("run", after_seq=499, limit=2)] == [500, 501]


def test_node_ids_with_slashes_and_counters_per_node(store: FirestoreStore) -> None:
    record = created(store)
    assert store.commit(step(store, record, [("a/b", 1), ("../c", 2), ("a/b", 3)])).committed
    history = history_of(store, "run")
    assert history.count("a/b") == 2
    assert history.get("a/b", 1).output == 3
    assert [r.output for r in history.all("../c")] == [2]
    assert history.node_ids() == ["a/b", "../c"]
    with pytest.raises(IndexError):
        history.get("a/b", 2)


def test_a_step_at_its_revision_is_one_batch_of_two_writes_and_no_read(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    record = created(store)
    instrumented.rpcs.clear()
    first = store.commit(at_revision(record, [("n0", "a")], current_node_id="n1"))
    assert first.committed
    assert (instrumented.kinds[-1], instrumented.writes[-1]) == ("batch", 2)  # head + result
    assert instrumented.rpcs == Counter({"commit": 1})  # no read, no transaction

    # The record a commit returns carries the next revision and counts: a chain of steps
    # can go on from it without reading anything either.
    after = first.record
    assert after is not None
    assert after == loaded(store)
    assert after.token == loaded(store).token
    assert counts_of(after) == {"n0": 1}
    instrumented.rpcs.clear()
    second = store.commit(at_revision(after, [("n1", "b"), ("n0", "c")]))
    assert second.committed
    assert instrumented.writes[-1] == 3  # head + two results
    assert instrumented.rpcs == Counter({"commit": 1})
    stored = loaded(store)
    assert (stored.version, stored.result_count) == (2, 3)
    assert counts_of(stored) == {"n0": 2, "n1": 1}
    assert list(counts_of(stored)) == ["n0", "n1"]  # first-result order
    assert [r.output for r in history_of(store, "run").all("n0")] == ["a", "c"]


def test_a_commit_at_a_stale_revision_is_a_lost_race_and_writes_nothing(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    record = created(store)
    # Another writer moves the run on without appending anything (as a cancel does).
    cancel = StepCommit("run", 0, record.snapshot.model_copy(update={"version": 1}))
    assert store.commit(cancel).committed
    after_cancel = head_data(store, "run")
    instrumented.rpcs.clear()
    commits = len(instrumented.writes)

    stale = store.commit(at_revision(record, [("n", "stale")]))
    assert not stale.committed
    assert instrumented.rpcs == Counter({"commit": 1})  # refused by the service, not read
    assert len(instrumented.writes) == commits  # nothing applied
    assert head_data(store, "run") == after_cancel
    run = head_ref(store)
    assert count_docs(run.collection("results")) == 0

    # The guard is the head's update time, not only its version: any write to the head
    # since the read refuses the commit, even one that leaves the version as it was.
    current = loaded(store)
    run.update({"updatedAt": 42})
    assert loaded(store).version == current.version
    assert not store.commit(at_revision(current, [("n", "stale too")])).committed
    assert count_docs(run.collection("results")) == 0
    assert store.commit(at_revision(loaded(store), [("n", "fresh")])).committed
    assert [r.output for r in history_of(store, "run").all("n")] == ["fresh"]


def test_a_revision_from_another_store_is_refused(store: FirestoreStore) -> None:
    record = created(store)
    commit = at_revision(record, [("n", 1)])
    foreign = StepCommit(**{**_commit_fields(commit), "expected_token": "2024-01-01"})
    with pytest.raises(TypeError, match="HeadRevision"):
        store.commit(foreign)
    assert isinstance(record.token, HeadRevision)


def _commit_fields(commit: StepCommit) -> dict[str, Any]:
    return {name: getattr(commit, name) for name in StepCommit.__slots__}


def test_the_head_grows_with_distinct_nodes_only(store: FirestoreStore) -> None:
    record = created(store)
    base = len(head_data(store, "run")["nodeCounts"])
    # Node ids are free text: dots, slashes, quotes, backticks and non-ASCII included.
    ids = [f"stage.{i}/x'`\"é" for i in range(300)]
    for start in range(0, 300, 10):  # 300 distinct nodes, ten per commit
        record = loaded(store)
        commit = at_revision(record, [(i, start) for i in ids[start : start + 10]])
        assert store.commit(commit).committed
    with_300 = head_data(store, "run")["nodeCounts"]
    per_node = (len(with_300.encode()) - base) / 300
    id_bytes = len(json.dumps(ids[299], ensure_ascii=False).encode())
    assert per_node < id_bytes + 8  # the id (JSON-quoted), its count and separators

    for _ in range(20):  # 200 more results of nodes it has: the head does not grow
        record = loaded(store)
        assert store.commit(at_revision(record, [(ids[7], "again")] * 10)).committed
    assert len(head_data(store, "run")["nodeCounts"]) - len(with_300) <= 3  # 1 -> 201

    stored = loaded(store)
    assert counts_of(stored) is not None
    assert list(counts_of(stored)) == ids
    assert counts_of(stored)[ids[7]] == 201
    history = history_of(store, "run")
    assert history.node_ids() == ids
    assert history.count(ids[7]) == 201
    assert history.count("never ran") == 0
    assert history.get(ids[7], 200).output == "again"


class Deliveries:
    """A scheduler that only records what it is asked to deliver."""

    def __init__(self) -> None:
        self.scheduled: list[Delivery] = []

    def schedule(self, delivery: Delivery) -> None:
        self.scheduled.append(delivery)


def test_each_delivery_of_the_dispatcher_reads_one_document_and_sends_one_batch(
    store: FirestoreStore, instrumented: InstrumentedClient, clock: FakeClock
) -> None:
    app = App(clock=clock)

    @app.node()
    def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("it", []))
        return StepResult({"index": index}, next_handle="loop" if index < 5 else "done")

    @app.node()
    def echo(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    app.workflow(
        "loop",
        {
            "start": "it",
            "nodes": [
                {"id": "it", "type": "iterate"},
                {"id": "body.1/x", "type": "echo", "data": {"tag": "body"}},
                {"id": "end", "type": "echo"},
            ],
            "edges": [
                {"source": "it", "target": "body.1/x", "sourceHandle": "loop"},
                {"source": "body.1/x", "target": "it"},
                {"source": "it", "target": "end", "sourceHandle": "done"},
            ],
        },
    )
    deliveries = Deliveries()
    dispatcher = Dispatcher(app, store, deliveries)
    assert RunService(dispatcher).start("loop", {"k": 1}, run_id="run").created
    per_delivery: list[Counter[str]] = []
    while deliveries.scheduled:
        delivery = deliveries.scheduled.pop(0)
        instrumented.rpcs.clear()
        outcome = asyncio.run(dispatcher.deliver(delivery))
        assert outcome.outcome == Outcome.COMMITTED
        per_delivery.append(Counter(instrumented.rpcs))
    # it x6, body x5, end: 12 steps. The first delivery also reads the definition once.
    assert len(per_delivery) == 12
    assert per_delivery[0] == Counter({"batch_get_documents": 2, "commit": 1})
    assert all(
        rpcs == Counter({"batch_get_documents": 1, "commit": 1}) for rpcs in per_delivery[1:]
    )
    assert instrumented.kinds[1:] == ["batch"] * 12
    assert set(instrumented.writes[1:]) == {2}  # head + the step's result

    stored = loaded(store)
    assert stored.status == "completed"
    assert counts_of(stored) == {"it": 6, "body.1/x": 5, "end": 1}
    assert assert_history_consistent(store, "run")[:3] == ["it", "body.1/x", "it"]
    assert [r.output["index"] for r in history_of(store, "run").all("it")] == [0, 1, 2, 3, 4, 5]


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
    assert history_of(store, "run").get("big", 0).output == text


def test_a_start_s_input_counts_once_in_its_head(store: FirestoreStore) -> None:
    """A start's pending payload is its input: the head refers to the input instead of
    holding it twice, so an input of 800 kB fits (it made a 1.6 MB head before)."""
    blob = {"blob": "x" * 800_000}
    record = RunRecord(**{**_fields(new_record("wide")), "input": blob, "pending": Payload(blob)})
    assert store.create_run(record).committed
    assert len(head_data(store, "wide")["pending"]) < 100
    loaded = store.load_run("wide")
    assert loaded is not None
    assert loaded.input == blob
    assert loaded.pending == Payload(blob)
    # A resume's payload, or one that is not the input, is kept as it is.
    other = RunRecord(**{**_fields(new_record("other")), "pending": Payload({"in": 2})})
    assert store.create_run(other).committed
    assert store.load_run("other").pending == Payload({"in": 2})  # type: ignore[union-attr]


def test_oversized_heads_and_commits_are_refused(store: FirestoreStore) -> None:
    big_input = new_record("fat")
    big_input = RunRecord(**{**_fields(big_input), "input": {"blob": "x" * 950_000}})
    with pytest.raises(LimitExceededError, match="head of run 'fat'"):
        store.create_run(big_input)
    assert store.load_run("fat") is None

    record = created(store)
    many = [("n", "x" * 800_000)] * 12  # 9.6 MB in one commit
    with pytest.raises(LimitExceededError, match="smaller step budget"):
        store.commit(step(store, record, many))


def _fields(record: RunRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in RunRecord.__slots__}


@pytest.mark.parametrize("first_batch", ["refused", "unanswered"])
def test_a_commit_without_revision_reads_again_when_another_write_moved_the_head(
    store: FirestoreStore,
    instrumented: InstrumentedClient,
    firestore_client: firestore.Client,
    firestore_prefix: str,
    first_batch: str,
) -> None:
    # Between the store's read and its batch, a write that is not a step (the version
    # stays) touches the head. The batch is refused by its guard, or fails without an
    # answer (then the store's check finds the head changed, without its token). Either
    # way the version the commit needs is still there: the store reads again, commits.
    record = created(store)
    head = firestore_client.collection(f"{firestore_prefix}_runs").document(run_document_id("run"))
    instrumented.before_next_commit(lambda: head.update({"probe": 1}))
    if first_batch == "unanswered":
        instrumented.faults = [("before", google_error(exceptions.ServiceUnavailable, "down"))]
    calls = instrumented.commit_calls
    commit = StepCommit(
        **{**_commit_fields(step(store, record, [("a", 1)])), "expected_token": None}
    )
    result = store.commit(commit)
    assert result.committed
    assert instrumented.commit_calls - calls == 2  # the first batch, then the one applied
    stored = loaded(store)
    assert (stored.version, stored.result_count) == (1, 1)
    assert history_of(store, "run").all("a") == [NodeResult(output=1, timestamp=5, attempt=1)]


@pytest.mark.parametrize("path", ["revision", "read-head"])
def test_a_head_outgrown_by_its_node_counts_is_refused_before_writing(
    store: FirestoreStore, instrumented: InstrumentedClient, path: str
) -> None:
    # An input that leaves ~3 kB of head: ten new nodes with 400-character ids do not fit.
    roomy = RunRecord(**{**_fields(new_record("run")), "input": "x" * (MAX_VALUE_BYTES - 3_000)})
    assert store.create_run(roomy).committed
    record = loaded(store)
    results = [(f"{i}" + "n" * 400, i) for i in range(10)]
    commit = at_revision(record, results)
    if path == "read-head":
        commit = StepCommit(**{**_commit_fields(commit), "expected_token": None})
    commits_before = instrumented.commit_calls
    with pytest.raises(LimitExceededError, match=r"head of run 'run'.* 10 distinct nodes") as err:
        store.commit(commit)
    assert "heads are limited to 900000 bytes" in str(err.value)
    assert instrumented.commit_calls == commits_before
    assert loaded(store) == record
    # What fits still commits: the limit is the document's, not an arbitrary count.
    assert store.commit(at_revision(record, results[:2])).committed


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
    assert history_of(store, "run").count("a") == 1


def test_a_commit_whose_reply_is_lost_is_reported_committed_not_a_conflict(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    record = created(store)
    instrumented.faults = [("after", google_error(exceptions.DeadlineExceeded, "reply lost"))]
    result = store.commit(step(store, record, [("a", 1)]))
    assert result.committed
    assert result.record is not None
    assert result.record.version == 1
    assert history_of(store, "run").all("a") == [NodeResult(output=1, timestamp=5, attempt=1)]
    # A genuinely stale commit is still a conflict.
    assert not store.commit(step(store, record, [("a", 2)])).committed


def test_a_batch_whose_reply_is_lost_is_reported_committed_after_one_read(
    store: FirestoreStore, instrumented: InstrumentedClient, sleeps: list[float]
) -> None:
    record = created(store)
    instrumented.rpcs.clear()
    instrumented.faults = [("after", google_error(exceptions.DeadlineExceeded, "reply lost"))]
    result = store.commit(at_revision(record, [("a", 1)]))
    assert result.committed
    assert result.record is not None
    assert result.record.version == 1
    assert instrumented.kinds[-1] == "batch"
    assert instrumented.writes.count(2) == 1  # applied once, not sent again
    assert instrumented.rpcs == Counter({"commit": 1, "batch_get_documents": 1})
    assert sleeps == []
    assert history_of(store, "run").all("a") == [NodeResult(output=1, timestamp=5, attempt=1)]
    # The same stale revision, from another commit, is still a lost race.
    assert not store.commit(at_revision(record, [("a", 2)])).committed


def test_a_batch_that_failed_before_landing_is_sent_again_once_checked(
    store: FirestoreStore, instrumented: InstrumentedClient, sleeps: list[float]
) -> None:
    record = created(store)
    instrumented.rpcs.clear()
    instrumented.faults = [("before", google_error(exceptions.ServiceUnavailable, "down"))]
    result = store.commit(at_revision(record, [("a", 1)]))
    assert result.committed
    # Failed call, a read (head unchanged: not applied), the batch again.
    assert instrumented.rpcs == Counter({"commit": 1, "batch_get_documents": 1})
    assert instrumented.commit_calls == 3  # the create, the failure, the second copy
    assert len(sleeps) == 1
    stored = loaded(store)
    assert (stored.version, stored.result_count, counts_of(stored)) == (1, 1, {"a": 1})


def test_a_batch_that_lands_late_is_recognised_as_ours_not_a_lost_race(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    record = created(store)
    # The first copy fails from the caller's side and is checked: the head is unchanged,
    # so a second copy goes out; the first copy lands just before it, and the second is
    # refused by the guard. The refusal is checked against the commit's token too.
    instrumented.faults = [("late", google_error(exceptions.DeadlineExceeded, "too slow"))]
    result = store.commit(at_revision(record, [("a", 1)]))
    assert result.committed
    assert instrumented.kinds.count("batch") == 2  # the create, and one copy of the commit
    assert history_of(store, "run").all("a") == [NodeResult(output=1, timestamp=5, attempt=1)]
    assert loaded(store).version == 1


def test_the_client_never_resends_a_batch_by_itself(
    store: FirestoreStore, instrumented: InstrumentedClient, firestore_client: firestore.Client
) -> None:
    """A reply lost *inside* the client: its default policy re-sends ``Commit`` on
    ``ServiceUnavailable``, and a re-sent batch would be refused by the guard its first copy
    satisfied, turning an applied commit into a reported lost race. The store turns that
    policy off and settles the ambiguity itself."""
    record = created(store)
    transport = firestore_client._firestore_api._transport
    rpc = transport._wrapped_methods[transport.commit]  # the callable the client retries
    send = rpc._target
    sent: list[int] = []

    def reply_lost_once(*args: Any, **kwargs: Any) -> Any:
        reply = send(*args, **kwargs)
        sent.append(1)
        if len(sent) == 1:
            raise google_error(exceptions.ServiceUnavailable, "connection reset")
        return reply

    rpc._target = reply_lost_once
    try:
        result = store.commit(at_revision(record, [("a", 1)]))
    finally:
        rpc._target = send
    assert result.committed
    assert len(sent) == 1
    assert loaded(store).version == 1


def test_persistent_unavailability_of_batches_surfaces_as_store_error(
    store: FirestoreStore, instrumented: InstrumentedClient, sleeps: list[float]
) -> None:
    record = created(store)
    instrumented.faults = [("before", google_error(exceptions.ServiceUnavailable, "down"))] * 9
    with pytest.raises(TransientError, match="commit failed after 3 attempts") as raised:
        store.commit(at_revision(record, [("a", 1)]))
    assert _chain_has(raised.value, exceptions.ServiceUnavailable)
    assert len(sleeps) == 2
    instrumented.faults = []
    assert loaded(store) == record
    assert history_of(store, "run").count("a") == 0


def test_a_create_whose_reply_is_lost_is_reported_created(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    instrumented.faults = [("after", google_error(exceptions.ServiceUnavailable, "reply lost"))]
    result = store.create_run(new_record("r"))
    assert result.committed
    assert not store.create_run(new_record("r")).committed


def test_a_create_that_lands_late_is_reported_created_not_existing(
    store: FirestoreStore, instrumented: InstrumentedClient, sleeps: list[float]
) -> None:
    # The first create fails from the caller's side; a read finds no run, so a second
    # create goes out; the first lands just before it, and the second is refused as
    # existing. The run found holds this call's token: created, by this call.
    instrumented.faults = [("late", google_error(exceptions.DeadlineExceeded, "too slow"))]
    result = store.create_run(new_record("r"))
    assert result.committed
    assert instrumented.commit_calls == 2
    assert instrumented.writes == [1]
    assert len(sleeps) == 1
    assert loaded(store, "r").version == 0


def test_a_create_of_a_run_that_exists_reads_it_once_and_writes_nothing(
    store: FirestoreStore, instrumented: InstrumentedClient
) -> None:
    created(store)
    instrumented.rpcs.clear()
    again = store.create_run(new_record("run", created_at=2_000))
    assert not again.committed
    assert again.record is not None
    assert again.record.created_at == 1_000
    assert instrumented.rpcs == Counter({"commit": 1, "batch_get_documents": 1})
    assert instrumented.writes == [1]


def test_persistent_contention_surfaces_as_store_error(
    store: FirestoreStore, instrumented: InstrumentedClient, sleeps: list[float]
) -> None:
    record = created(store)
    calls = instrumented.commit_calls
    instrumented.faults = [("before", google_error(exceptions.Aborted, "contention"))] * 100
    with pytest.raises(TransientError, match="failed after 3 attempts") as raised:
        store.commit(step(store, record, [("a", 1)]))
    assert _chain_has(raised.value, exceptions.Aborted)
    # A read of the head, then 3 guarded batches, each checked by a read (head unchanged).
    assert instrumented.commit_calls - calls == 3
    assert len(sleeps) == 2
    instrumented.faults = []
    assert store.load_run("run") == record
    assert history_of(store, "run").count("a") == 0


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
    assert history_of(store, "run").get("a", 0).output == output
