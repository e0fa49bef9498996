"""The SnapshotStore contract: every backend passes the same suite.

What the dispatcher and the service rely on: a run reads back exactly as written; a
commit is applied whole, once, and only over the head it was computed from (its version,
and its token where the store issues tokens); results are read back per node and in commit
order; listings page newest first; a store claims to have scheduled a delivery only if it
recorded it with the commit; a failure that may pass is a ``TransientError`` and writes
nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import pytest

from refluxo.errors import TransientError
from refluxo.model import NodeResult, RetryState, Snapshot, SnapshotStatus
from refluxo.runtime.due import expected_at
from refluxo.runtime.errors import BadRequest
from refluxo.runtime.ports import (
    AppendedResult,
    ChildEnd,
    Delivery,
    JoinCount,
    Payload,
    RunRecord,
    SnapshotStore,
    StepCommit,
)
from tests.contract.store_backends import StoreUnderTest
from tests.support.stores import new_record, step

T = TypeVar("T")


def untokened(record: RunRecord | None) -> RunRecord:
    """``record`` without its commit token, to compare what a run holds."""
    assert record is not None
    return dataclasses.replace(record, token=None)


def load(store: SnapshotStore, run_id: str) -> RunRecord:
    record = store.load_run(run_id)
    assert record is not None, f"run {run_id!r} is missing"
    return record


def outputs(store: SnapshotStore, run_id: str, node_id: str) -> list[Any]:
    return [result.output for result in store.history(load(store, run_id)).all(node_id)]


def commit_steps(store: SnapshotStore, run_id: str, *steps: list[tuple[str, Any]]) -> RunRecord:
    """Commit each step over the freshly loaded head (as the dispatcher does); the last head."""
    for results in steps:
        record = load(store, run_id)
        commit = dataclasses.replace(step(store, record, results), expected_token=record.token)
        assert store.commit(commit).committed
    return load(store, run_id)


# -- runs --------------------------------------------------------------------------------------


def test_it_is_a_snapshot_store(store: StoreUnderTest) -> None:
    assert isinstance(store.store, SnapshotStore)


def test_a_created_run_loads_back_exactly(store: StoreUnderTest) -> None:
    snapshot = Snapshot(
        workflow_id="r1",
        status=SnapshotStatus.ERROR,
        current_node_id="fetch",
        version=0,
        last_started_at=1_700_000_000_123,
        total_execution_time=42,
        metadata={"note": "naïve ✓ 日本", "nested": [[1, 2], [3, [4, []]]], "x": 0.1, "n": None},
        retry_state=RetryState("fetch", 2, 1_700_000_005_000),
    )
    record = RunRecord(
        run_id="r1",
        workflow="wf",
        definition_version="v1",
        snapshot=snapshot,
        created_at=1_000,
        updated_at=1_001,
        input={"rows": [[1, "a"], [2, "b"]], "big": 2**53 + 1, "empty": {}},
        pending=Payload({"resume": True}, source="resume"),
    )
    created = store.store.create_run(record)
    assert created.committed
    assert untokened(created.record) == record
    loaded = load(store.store, "r1")
    assert loaded.snapshot == snapshot
    assert untokened(loaded) == record
    assert store.store.load_run("r2") is None


def test_creating_an_existing_run_changes_nothing_and_returns_it(store: StoreUnderTest) -> None:
    assert store.store.create_run(new_record("r1", created_at=1_000)).committed
    stored = load(store.store, "r1")
    again = store.store.create_run(new_record("r1", created_at=2_000, status="paused"))
    assert not again.committed
    assert untokened(again.record) == untokened(stored)
    assert untokened(load(store.store, "r1")) == untokened(stored)


def test_a_commit_over_the_stored_version_replaces_the_head_and_appends(
    store: StoreUnderTest,
) -> None:
    store.store.create_run(new_record("r1"))
    record = load(store.store, "r1")
    store.clock.advance(5_000)
    commit = dataclasses.replace(
        step(store.store, record, [("a", {"n": 1})], current_node_id="b", metadata={"k": [1]}),
        pending=Payload("next", source="resume"),
    )
    result = store.store.commit(commit)
    assert result.committed
    after = load(store.store, "r1")
    assert after.snapshot == commit.snapshot
    assert after.version == 1
    assert after.result_count == 1
    assert after.pending == Payload("next", source="resume")
    assert after.updated_at == store.clock.now
    assert (after.created_at, after.input, after.workflow) == (1_000, {"in": 1}, "wf")
    assert untokened(result.record) == untokened(after)
    assert outputs(store.store, "r1", "a") == [{"n": 1}]


def test_a_stale_commit_changes_nothing(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("r1"))
    record = load(store.store, "r1")
    commit_steps(store.store, "r1", [("a", "first")])
    after = load(store.store, "r1")
    for token in (None, record.token):  # a stale version, with or without the stale token
        stale = dataclasses.replace(
            step(store.store, record, [("a", "stale"), ("b", "stale")]),
            expected_token=token,
            next_delivery=Delivery("r1", 1),
        )
        assert not store.store.commit(stale).committed
    assert untokened(load(store.store, "r1")) == untokened(after)
    assert [entry.result.output for entry in store.store.timeline("r1")] == ["first"]
    assert outputs(store.store, "r1", "b") == []
    if store.outbox is not None:
        assert Delivery("r1", 1) not in store.outbox()


def test_a_commit_to_an_unknown_run_is_refused(store: StoreUnderTest) -> None:
    ghost = new_record("ghost")
    assert not store.store.commit(step(store.store, ghost, [("a", 1)])).committed
    assert store.store.load_run("ghost") is None
    assert store.store.timeline("ghost") == []


def test_a_commit_with_the_token_of_the_current_head_is_applied(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("r1"))
    for output in ("first", "second", "third"):
        record = load(store.store, "r1")
        commit = dataclasses.replace(
            step(store.store, record, [("a", output)]), expected_token=record.token
        )
        result = store.store.commit(commit)
        assert result.committed
    assert outputs(store.store, "r1", "a") == ["first", "second", "third"]
    assert load(store.store, "r1").version == 3


def test_a_token_refuses_the_commit_after_any_change_to_the_head(store: StoreUnderTest) -> None:
    """Even a change that kept the version; a store that issues no token checks the version."""
    store.store.create_run(new_record("r1"))
    read = load(store.store, "r1")
    # Another writer changes the head without changing its version.
    same_version = StepCommit(
        run_id="r1", expected_version=0, snapshot=read.snapshot, pending=Payload("changed")
    )
    assert store.store.commit(same_version).committed
    changed = load(store.store, "r1")
    assert changed.version == read.version
    late = dataclasses.replace(step(store.store, read, [("a", "late")]), expected_token=read.token)
    result = store.store.commit(late)
    if read.token is None:
        assert result.committed  # no token issued: the version matched
        return
    assert not result.committed
    assert untokened(load(store.store, "r1")) == untokened(changed)
    assert store.store.timeline("r1") == []


# -- results -----------------------------------------------------------------------------------


def test_results_are_read_per_node_in_first_result_order(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("r1"))
    commit_steps(
        store.store,
        "r1",
        [("it", 0), ("body", "b0"), ("it", 1)],
        [("body", "b1"), ("end", None)],
        [("zeta", "z"), ("alpha", "a")],
    )
    record = load(store.store, "r1")
    assert record.result_count == 7
    history = store.store.history(record)
    assert history.node_ids() == ["it", "body", "end", "zeta", "alpha"]
    assert (history.count("it"), history.count("body"), history.count("end")) == (2, 2, 1)
    assert history.count("nothing") == 0
    assert history.all("nothing") == []
    assert history.get("body", 1) == NodeResult(output="b1", timestamp=5, attempt=1)
    assert [result.output for result in history.all("it")] == [0, 1]
    assert history.get("end", 0).output is None
    with pytest.raises(IndexError):
        history.get("body", 2)


def test_errors_and_null_payloads_round_trip(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("r1"))
    record = load(store.store, "r1")
    failure = NodeResult(output=None, timestamp=9, attempt=2, error="ValueError: bad")
    commit = StepCommit(
        run_id="r1",
        expected_version=0,
        snapshot=record.snapshot.model_copy(update={"version": 1, "status": SnapshotStatus.FAILED}),
        results=[AppendedResult(0, "a", 0, failure)],
        pending=Payload(None),
        expected_token=record.token,
    )
    assert store.store.commit(commit).committed
    loaded = load(store.store, "r1")
    assert loaded.status == SnapshotStatus.FAILED
    assert loaded.pending == Payload(None)
    assert store.store.history(loaded).get("a", 0) == failure


def test_the_timeline_pages_through_results_in_commit_order(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("r1"))
    commit_steps(
        store.store, "r1", [("a", 0), ("b", 1), ("a", 2)], [("c", 3)], [("a", 4), ("b", 5)]
    )
    pages: list[list[tuple[int, str, Any]]] = []
    after = -1
    while page := store.store.timeline("r1", after_seq=after, limit=4):
        pages.append([(entry.seq, entry.node_id, entry.result.output) for entry in page])
        after = page[-1].seq
    assert pages == [
        [(0, "a", 0), (1, "b", 1), (2, "a", 2), (3, "c", 3)],
        [(4, "a", 4), (5, "b", 5)],
    ]
    assert [entry.seq for entry in store.store.timeline("r1", after_seq=2, limit=1)] == [3]


def test_a_timeline_page_of_large_results_stops_at_its_byte_cap(
    store: StoreUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page holds at most TIMELINE_PAGE_BYTES of results (a page of 1,000 results of
    256 KiB was one 256 MB answer), and always one: paging on reaches every result."""
    from refluxo.runtime import stored

    monkeypatch.setattr(stored, "TIMELINE_PAGE_BYTES", 2_500)
    store.store.create_run(new_record("large"))
    commit_steps(store.store, "large", [("n", "x" * 1_000) for _ in range(5)])
    commit_steps(store.store, "large", [("n", "y" * 4_000)])
    sizes: list[int] = []
    after = -1
    while page := store.store.timeline("large", after_seq=after, limit=100):
        sizes.append(len(page))
        after = page[-1].seq
    assert sizes == [2, 2, 1, 1]  # two of ~1 kB a page; the 4 kB one alone


def test_a_history_well_past_one_mebibyte(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("big"))
    blob = "x" * 20_000
    for index in range(60):  # 60 x 20 kB = 1.2 MB of results, one commit each
        commit_steps(store.store, "big", [("n", {"i": index, "blob": blob})])
    large = "y" * 400_000  # and 1.2 MB in a single commit
    commit_steps(store.store, "big", [("m", large), ("m", large), ("m", large)])
    record = load(store.store, "big")
    assert record.result_count == 63
    history = store.store.history(record)
    assert history.count("n") == 60
    assert history.get("n", 59).output == {"i": 59, "blob": blob}
    assert [result.output["i"] for result in history.all("n")] == list(range(60))
    assert [result.output for result in history.all("m")] == [large] * 3
    assert [entry.seq for entry in store.store.timeline("big", after_seq=55)] == list(range(56, 63))


# -- listing -----------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_by_status_in_pages(store: StoreUnderTest) -> None:
    created = [1_000, 1_001, 1_001, 1_002, 1_003, 1_003, 1_003, 1_004]  # with ties
    for index, created_at in enumerate(created):
        status = "paused" if index % 3 == 1 else "active"
        store.store.create_run(new_record(f"r{index}", created_at=created_at, status=status))

    def listed(status: SnapshotStatus | None) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = store.store.list_runs(status=status, limit=2, cursor=cursor)
            assert len(page.runs) <= 2
            assert status is None or all(run.status == status for run in page.runs)
            for run in page.runs:
                assert untokened(run) == untokened(load(store.store, run.run_id))
            seen += [run.run_id for run in page.runs]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    # Newest created first; runs created at the same time by id, descending.
    assert listed(None) == ["r7", "r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    assert listed(SnapshotStatus.ACTIVE) == ["r6", "r5", "r3", "r2", "r0"]
    assert listed(SnapshotStatus.PAUSED) == ["r7", "r4", "r1"]
    assert listed(SnapshotStatus.FAILED) == []
    everything = store.store.list_runs(limit=8)
    assert len(everything.runs) == 8
    assert everything.next_cursor is None


def test_a_commit_moves_a_run_between_status_listings(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("r1"))
    record = load(store.store, "r1")
    done = dataclasses.replace(
        step(store.store, record, [("a", 1)], status=SnapshotStatus.COMPLETED),
        expected_token=record.token,
    )
    assert store.store.commit(done).committed
    assert store.store.list_runs(status=SnapshotStatus.ACTIVE).runs == []
    (listed,) = store.store.list_runs(status=SnapshotStatus.COMPLETED).runs
    assert listed.run_id == "r1"
    assert listed.version == 1


def test_a_cursor_that_no_listing_made_is_a_bad_request(store: StoreUnderTest) -> None:
    with pytest.raises(BadRequest):
        store.store.list_runs(cursor="not a cursor")


# -- definitions -------------------------------------------------------------------------------


def test_definitions_are_kept_once_per_version(store: StoreUnderTest) -> None:
    body = {"nodes": [{"id": "a", "type": "t", "data": {"rows": [[1]]}}], "edges": []}
    store.store.put_definition("v1", "wf", body)
    store.store.put_definition("v1", "wf", {"nodes": [], "edges": []})  # the first one stays
    assert store.store.get_definition("v1") == body
    assert store.store.get_definition("v2") is None


# -- deliveries recorded with the commit (a transactional outbox) ------------------------------


def test_a_store_claims_a_delivery_scheduled_only_if_it_recorded_it(
    store: StoreUnderTest,
) -> None:
    paired = store.outbox is not None
    first = Delivery("r1", 0)
    created = store.store.create_run(new_record("r1"), first_delivery=first)
    assert created.scheduled == paired
    if store.outbox is not None:
        assert store.outbox() == [first]

    record = load(store.store, "r1")
    following = Delivery("r1", 1, due_at=5_000)
    commit = dataclasses.replace(
        step(store.store, record, [("a", 1)]),
        next_delivery=following,
        delivery=first,
        expected_token=record.token,
    )
    result = store.store.commit(commit)
    assert result.committed
    assert result.scheduled == paired
    if store.outbox is not None:
        assert store.outbox() == [following]  # the next one recorded, the current one done

    stale = dataclasses.replace(
        step(store.store, record, [("a", 2)]), next_delivery=Delivery("r1", 99)
    )
    assert not store.store.commit(stale).committed
    if store.outbox is not None:
        assert store.outbox() == [following]


# -- races -------------------------------------------------------------------------------------


def at_once(actions: Sequence[Callable[[], T]], timeout: float = 120) -> list[T]:
    """Run each action in a thread of its own, released together; their results in order.

    The test fails if an action raised (its error is re-raised) or did not end in time.
    """
    start = threading.Barrier(len(actions), timeout=30)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            results[index] = actions[index]()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(actions))]


CONTENDERS = ("a", "b", "c", "d", "e", "f")
"""Callers racing on one head: more than two, so a store that retries in lock step (two
transactions aborting each other) shows it."""


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "version"])
def test_concurrent_commits_on_one_version_only_one_wins(
    store: StoreUnderTest, with_token: bool
) -> None:
    store.store.create_run(new_record("race"))
    record = load(store.store, "race")
    commits = [
        dataclasses.replace(
            step(store.store, record, [("a", label)]),
            expected_token=record.token if with_token else None,
        )
        for label in CONTENDERS
    ]
    results = at_once([functools.partial(store.store.commit, commit) for commit in commits])
    won = {label: result.committed for label, result in zip(CONTENDERS, results, strict=True)}
    assert sorted(won.values()) == [False] * (len(CONTENDERS) - 1) + [True]
    (winner,) = [label for label, committed in won.items() if committed]
    after = load(store.store, "race")
    assert (after.version, after.result_count) == (1, 1)
    assert outputs(store.store, "race", "a") == [winner]


def test_concurrent_creates_of_one_run_create_it_once(store: StoreUnderTest) -> None:
    results = at_once(
        [
            functools.partial(
                store.store.create_run, dataclasses.replace(new_record("once"), input=label)
            )
            for label in CONTENDERS
        ]
    )
    created = dict(zip(CONTENDERS, results, strict=True))
    winners = [label for label, result in created.items() if result.committed]
    assert len(winners) == 1
    stored = load(store.store, "once")
    assert stored.input == winners[0]
    # Every loser is told which run exists.
    assert all(
        result.record is not None and result.record.input == winners[0]
        for result in created.values()
    )


# -- failures that may pass --------------------------------------------------------------------


def test_a_failure_that_may_pass_is_a_transient_error_and_writes_nothing(
    fallible_store: StoreUnderTest,
) -> None:
    store = fallible_store.store
    store.create_run(new_record("r1"))
    record = load(store, "r1")
    commit = dataclasses.replace(
        step(store, record, [("a", 1)]),
        expected_token=record.token,
        next_delivery=Delivery("r1", 1),
    )
    assert fallible_store.unavailable is not None
    with fallible_store.unavailable():
        with pytest.raises(TransientError):
            store.commit(commit)
        with pytest.raises(TransientError):
            store.create_run(new_record("r2"))
    assert untokened(load(store, "r1")) == untokened(record)
    assert store.timeline("r1") == []
    assert store.load_run("r2") is None
    if fallible_store.outbox is not None:
        assert fallible_store.outbox() == []
    assert store.commit(commit).committed  # once it passed, the same commit applies
    assert outputs(store, "r1", "a") == [1]


def test_recording_a_child_end_that_may_pass_is_a_transient_error_and_records_nothing(
    fallible_store: StoreUnderTest,
) -> None:
    store = fallible_store.store
    assert store.record_child_end("p", 1, completed(0)) == JoinCount(1, 0)
    assert fallible_store.unavailable is not None
    with fallible_store.unavailable(), pytest.raises(TransientError):
        store.record_child_end("p", 1, failed(1))
    assert all_ends(store, "p", 1) == [completed(0)]
    assert store.record_child_end("p", 1, failed(1)) == JoinCount(2, 1)  # once it passed


def test_firestore_a_recording_whose_reply_was_lost_is_counted_once(
    firestore_client: Any, firestore_prefix: str
) -> None:
    """Firestore only (the one store whose write can land and still answer an error): the
    store's retry of such a recording finds it recorded and counts it once."""
    from google.api_core import exceptions

    from refluxo.backends.gcp.firestore import FirestoreStore
    from tests.support.google_errors import google_error

    lost: list[int] = []

    class LosingReplies:
        """A client whose next ``lose`` batch commits land, then answer an error."""

        lose = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(firestore_client, name)

        def batch(self) -> Any:
            batch = firestore_client.batch()
            commit = batch.commit

            def landed_then_lost(*args: Any, **kwargs: Any) -> Any:
                written = commit(*args, **kwargs)
                if self.lose:
                    self.lose -= 1
                    lost.append(1)
                    raise google_error(exceptions.DeadlineExceeded, "reply lost")
                return written

            batch.commit = landed_then_lost
            return batch

    client = LosingReplies()
    store = FirestoreStore(
        cast(Any, client), prefix=firestore_prefix, max_attempts=3, sleep=lambda _: None
    )
    client.lose = 1
    assert store.record_child_end("p", 1, failed(0)) == JoinCount(1, 1)
    client.lose = 1
    assert store.record_child_end("p", 1, completed(1, {"a": [1]})) == JoinCount(2, 1)
    assert len(lost) == 2  # each landed, answered an error, and was sent again
    assert all_ends(store, "p", 1) == [failed(0), completed(1, {"a": [1]})]


# -- the join ledger (ends of child runs) ------------------------------------------------------


def completed(index: int, output: Any = None, parent: str = "p") -> ChildEnd:
    return ChildEnd(index, f"{parent}-child-{index}", "completed", output)


def failed(index: int, error: str = "boom", parent: str = "p") -> ChildEnd:
    return ChildEnd(index, f"{parent}-child-{index}", "failed", error=error)


def all_ends(store: SnapshotStore, parent_id: str, version: int) -> list[ChildEnd]:
    return store.child_ends(parent_id, version, after_index=-1, limit=10_000)


def test_a_child_end_keeps_the_descendants_its_child_started(store: StoreUnderTest) -> None:
    ledger = store.store
    ledger.record_child_end("p", 1, dataclasses.replace(completed(0, [1]), descendants=12))
    ledger.record_child_end("p", 1, dataclasses.replace(failed(1), descendants=3))
    ledger.record_child_end("p", 1, completed(2))
    assert [end.descendants for end in all_ends(ledger, "p", 1)] == [12, 3, 0]


def test_a_child_end_is_counted_once_however_often_it_is_recorded(store: StoreUnderTest) -> None:
    ledger = store.store
    assert ledger.child_ends("p", 1) == []
    assert ledger.record_child_end("p", 1, completed(3, {"n": 3})) == JoinCount(1, 0)
    # The same index again, even saying something else: nothing changes.
    assert ledger.record_child_end("p", 1, completed(3, {"n": 3})) == JoinCount(1, 0)
    assert ledger.record_child_end("p", 1, failed(3, "late")) == JoinCount(1, 0)
    assert ledger.record_child_end("p", 1, failed(0, "ValueError: bad")) == JoinCount(2, 1)
    assert ledger.record_child_end("p", 1, failed(0, "ValueError: bad")) == JoinCount(2, 1)
    assert ledger.record_child_end("p", 1, completed(0, "now fine")) == JoinCount(2, 1)
    assert ledger.record_child_end("p", 1, completed(1, None)) == JoinCount(3, 1)
    assert all_ends(ledger, "p", 1) == [
        failed(0, "ValueError: bad"),
        completed(1, None),
        completed(3, {"n": 3}),
    ]


def test_a_failed_end_keeps_its_error_and_no_output(store: StoreUnderTest) -> None:
    end = ChildEnd(0, "p-child-0", "failed", output={"partial": 1}, error="Cancelled: x")
    assert store.store.record_child_end("p", 1, end) == JoinCount(1, 1)
    (stored,) = all_ends(store.store, "p", 1)
    assert stored == ChildEnd(0, "p-child-0", "failed", None, "Cancelled: x")
    assert stored.failed


def test_ends_recorded_concurrently_and_again_are_each_counted_once(
    store: StoreUnderTest,
) -> None:
    """96 ends from 8 threads, each recorded a second time by another thread while the
    first threads may still be recording: exactly 96 ended, and the failed ones."""
    total, threads_n = 96, 8

    def end_of(index: int) -> ChildEnd:
        if index % 7 == 0:
            return failed(index, f"error {index}")
        return completed(index, {"i": index})

    share = [list(range(t, total, threads_n)) for t in range(threads_n)]

    def record(t: int) -> list[JoinCount]:
        # Own share, then the next thread's share again (the duplicates).
        return [
            store.store.record_child_end("p", 4, end_of(index))
            for index in [*share[t], *share[(t + 1) % threads_n]]
        ]

    seen = dict(enumerate(at_once([functools.partial(record, t) for t in range(threads_n)])))
    want = JoinCount(total, len(range(0, total, 7)))
    for counts in seen.values():
        assert len(counts) == 2 * len(share[0])
        # Each answer counts at least the caller's own end, never more than there are; the
        # answers one thread receives never go back.
        assert all(1 <= c.ended <= total and c.failed <= want.failed for c in counts)
        assert [c.ended for c in counts] == sorted(c.ended for c in counts)
        assert [c.failed for c in counts] == sorted(c.failed for c in counts)
    assert max(c.ended for counts in seen.values() for c in counts) == total
    assert store.store.record_child_end("p", 4, end_of(0)) == want
    assert all_ends(store.store, "p", 4) == [end_of(index) for index in range(total)]


def test_the_same_ends_recorded_by_racing_callers_are_counted_once(store: StoreUnderTest) -> None:
    """4 callers record the same 5 ends at the same moment, as racing reports do (few: the
    Firestore emulator settles each conflict in about 2 s)."""
    callers, total = 4, 5
    ends = [failed(i) if i % 3 == 0 else completed(i, [i]) for i in range(total)]
    each_end = threading.Barrier(callers, timeout=30)

    def record() -> list[JoinCount]:
        answers = []
        for end in ends:
            each_end.wait()  # every caller records this end at once
            answers.append(store.store.record_child_end("p", 7, end))
        return answers

    answers = at_once([record] * callers)
    # No caller records an end before every caller has returned from the previous one: the
    # answers for end ``i`` count exactly the ends ``0 .. i``.
    expected_counts = [
        JoinCount(i + 1, len([end for end in ends[: i + 1] if end.failed])) for i in range(total)
    ]
    assert answers == [expected_counts] * callers
    assert all_ends(store.store, "p", 7) == ends


def test_child_inputs_are_kept_apart_and_read_one_by_one(store: StoreUnderTest) -> None:
    inputs = [{"i": i, "nested": {"list": [i, None, "é"]}} for i in range(250)]
    store.store.put_child_inputs("p", 3, "d1", inputs)
    store.store.put_child_inputs("p", 3, "d1", inputs)  # again: the same inputs
    store.store.put_child_inputs("p", 3, "d2", ["other"])
    store.store.put_child_inputs("q", 3, "d1", [None])
    for index in (0, 99, 100, 199, 200, 249):
        assert store.store.child_input("p", 3, "d1", index) == inputs[index]
    assert store.store.child_input("p", 3, "d2", 0) == "other"
    assert store.store.child_input("q", 3, "d1", 0) is None
    for missing in (("p", 3, "d1", 250), ("p", 4, "d1", 0), ("p", 3, "d3", 0)):
        with pytest.raises(LookupError):
            store.store.child_input(*missing)


def test_child_ends_page_by_index_and_keep_what_was_recorded(store: StoreUnderTest) -> None:
    nested = {"rows": [[1, "a"], [2, [3, []]]], "n": None, "x": 0.1, "s": "naïve ✓ 日本"}
    ends = {
        0: completed(0, nested),
        1: failed(1, "Traceback: ValueError('bad')\n  line 2"),
        2: completed(2, [[[]]]),
        5: completed(5, None),
        9: completed(9, "nine"),
        10: completed(10, 10),  # orders after 9: by index, not as text
        11: failed(11, "timeout"),
        100: completed(100, {"deep": {"er": [{"est": True}]}}),
        1_000: completed(1_000, False),
        123_456: completed(123_456, ""),
    }
    for index in (100, 2, 123_456, 11, 0, 9, 1_000, 5, 10, 1):  # in no particular order
        store.store.record_child_end("p", 2, ends[index])
    order = sorted(ends)
    assert all_ends(store.store, "p", 2) == [ends[index] for index in order]

    pages: list[list[int]] = []
    after = -1
    while page := store.store.child_ends("p", 2, after_index=after, limit=3):
        assert len(page) <= 3
        pages.append([end.index for end in page])
        assert page == [ends[end.index] for end in page]
        after = page[-1].index
    assert pages == [[0, 1, 2], [5, 9, 10], [11, 100, 1_000], [123_456]]
    assert [e.index for e in store.store.child_ends("p", 2, after_index=3, limit=2)] == [5, 9]
    assert [e.index for e in store.store.child_ends("p", 2, after_index=5, limit=1)] == [9]
    assert [e.index for e in store.store.child_ends("p", 2, after_index=99)] == [
        100,
        1_000,
        123_456,
    ]
    assert store.store.child_ends("p", 2, after_index=123_456) == []
    assert store.store.child_ends("p", 2, after_index=-1, limit=1) == [ends[0]]


def test_waits_of_other_versions_or_parents_do_not_mix(store: StoreUnderTest) -> None:
    ledger = store.store
    waits = [("p", 3), ("p", 4), ("q", 3), ("p-3", 0)]
    for number, (parent, version) in enumerate(waits):
        assert ledger.record_child_end(
            parent, version, completed(0, [parent, version], parent)
        ) == JoinCount(1, 0)
        for index in range(1, number + 1):  # a different number of ends in each wait
            ledger.record_child_end(parent, version, failed(index, f"{parent}/{version}", parent))
    for number, (parent, version) in enumerate(waits):
        assert ledger.record_child_end(parent, version, completed(0, "again", parent)) == JoinCount(
            number + 1, number
        )
        assert all_ends(ledger, parent, version) == [
            completed(0, [parent, version], parent),
            *(failed(index, f"{parent}/{version}", parent) for index in range(1, number + 1)),
        ]
    assert ledger.child_ends("p", 5) == []
    assert ledger.child_ends("r", 3) == []


# -- overdue runs (the reconciler's query) -----------------------------------------------------


def overdue(store: SnapshotStore, expected_before: int, *, limit: int = 100) -> list[str]:
    """The overdue runs ``overdue_runs`` pages through, in the order visited.

    Checks what every page promises: at most ``limit`` runs, each as stored, ordered by
    expected time then id, never one that expects nothing; a run expected a little later
    (a store indexing a coarser copy of the time may return one) is left out of the answer.
    No run is visited twice.
    """
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = store.overdue_runs(expected_before, limit=limit, cursor=cursor)
        assert len(page.runs) <= limit
        keys = []
        for run in page.runs:
            assert untokened(run) == untokened(load(store, run.run_id))
            when = expected(run)
            assert when is not None, f"{run.run_id} expects nothing, yet was returned"
            keys.append((when, run.run_id))
            if when <= expected_before:
                seen.append(run.run_id)
        assert keys == sorted(keys)
        if page.next_cursor is None:
            assert len(seen) == len(set(seen)), seen
            return seen
        cursor = page.next_cursor


def expected(record: RunRecord) -> int | None:
    return expected_at(record.snapshot, record.updated_at)


def commit_head(store: StoreUnderTest, run_id: str, **changes: Any) -> RunRecord:
    """Commit a new head with ``changes`` (no results) at the store's clock; the record."""
    record = load(store.store, run_id)
    commit = dataclasses.replace(
        step(store.store, record, [], **changes), expected_token=record.token
    )
    assert store.store.commit(commit).committed
    return load(store.store, run_id)


def test_active_runs_are_overdue_from_their_last_write(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("r1", created_at=1_000))
    store.store.create_run(new_record("r2", created_at=2_000))
    assert overdue(store.store, 999) == []
    assert overdue(store.store, 1_000) == ["r1"]  # at or before
    assert overdue(store.store, 5_000) == ["r1", "r2"]  # oldest expectation first

    store.clock.now = 7_000
    moved = commit_head(store, "r1", current_node_id="b")
    assert moved.updated_at == 7_000
    assert expected(moved) == 7_000
    assert overdue(store.store, 5_000) == ["r2"]  # r1 stepped: expected again from 7,000
    assert overdue(store.store, 7_000) == ["r2", "r1"]


def test_finished_and_caller_paused_runs_are_never_overdue(store: StoreUnderTest) -> None:
    for run_id in ("done", "failed", "waiting", "cancelled"):
        store.store.create_run(new_record(run_id, created_at=1_000))
    store.store.create_run(new_record("born-paused", created_at=1_000, status="paused"))
    store.clock.now = 2_000
    commit_head(store, "done", status=SnapshotStatus.COMPLETED)
    commit_head(store, "failed", status=SnapshotStatus.FAILED)
    commit_head(store, "waiting", status=SnapshotStatus.PAUSED)  # until a caller resumes it
    commit_head(store, "cancelled", status=SnapshotStatus.FAILED, metadata={"cancelledAt": 1})
    assert overdue(store.store, 2**62) == []

    store.clock.now = 3_000
    resumed = commit_head(store, "waiting", status=SnapshotStatus.ACTIVE)
    assert overdue(store.store, 2**62) == ["waiting"]
    assert expected(resumed) == 3_000


def test_a_retrying_run_is_expected_at_its_next_retry(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("retrying", created_at=1_000))
    store.clock.now = 2_000
    commit_head(
        store,
        "retrying",
        status=SnapshotStatus.ERROR,
        retry_state=RetryState("a", 1, 60_000),
    )
    assert overdue(store.store, 59_999) == []
    assert overdue(store.store, 60_000) == ["retrying"]

    # A retry time already past when committed: expected at the commit.
    store.clock.now = 90_000
    late = commit_head(
        store, "retrying", status=SnapshotStatus.ERROR, retry_state=RetryState("a", 2, 80_000)
    )
    assert expected(late) == 90_000
    assert overdue(store.store, 89_999) == []
    assert overdue(store.store, 90_000) == ["retrying"]


def test_a_timed_pause_is_expected_at_its_resume_time(store: StoreUnderTest) -> None:
    store.store.create_run(new_record("sleeping", created_at=1_000))
    store.store.create_run(new_record("awake", created_at=1_000))
    store.clock.now = 2_000
    commit_head(store, "sleeping", status=SnapshotStatus.PAUSED, metadata={"resumeAt": 500_000})
    assert overdue(store.store, 499_999) == ["awake"]
    assert overdue(store.store, 500_000) == ["awake", "sleeping"]


def test_paging_overdue_runs_visits_each_once_in_order(store: StoreUnderTest) -> None:
    # Ties on the expected time are ordered by run id.
    times = {"r0": 3_000, "r1": 1_000, "r2": 2_000, "r3": 1_000, "r4": 2_000, "r5": 1_000}
    for run_id, at in times.items():
        store.store.create_run(new_record(run_id, created_at=at))
    store.store.create_run(new_record("later", created_at=9_000))
    store.store.create_run(new_record("paused", created_at=1_000, status="paused"))
    order = ["r1", "r3", "r5", "r2", "r4", "r0"]
    assert overdue(store.store, 3_000) == order  # one page: in order
    for limit in (1, 2, 4, 6):
        # Several pages: each run exactly once (each page in order).
        assert sorted(overdue(store.store, 3_000, limit=limit)) == sorted(order), limit
    assert sorted(overdue(store.store, 2**62, limit=3)) == sorted([*order, "later"])

    first = store.store.overdue_runs(3_000, limit=2)
    assert len(first.runs) <= 2
    assert first.next_cursor is not None


def test_a_cursor_that_no_overdue_page_made_is_a_bad_request(store: StoreUnderTest) -> None:
    with pytest.raises(BadRequest):
        store.store.overdue_runs(1_000, cursor="not a cursor")
