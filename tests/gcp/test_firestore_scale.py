"""FirestoreStore at scale: spread document names, history read by name, the coarse
``dueAt`` behind ``overdue_runs``, and the retention of finished runs (``expireAt``).

Runs against the real Firestore emulator. RPCs are counted where the client sends them
(its GAPIC methods), so "no query" means no ``RunQuery`` reached the emulator.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import firestore
from hypothesis import given
from hypothesis import strategies as st

from refluxo.backends.gcp.firestore.layout import (
    DUE_SLACK_MS,
    HISTORY_BATCH,
    HeadRevision,
    node_counts_of,
    result_document_id,
    run_document_id,
    stored_due_at,
)
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.model import NodeResult, RetryState, SnapshotStatus
from refluxo.runtime import App, Dispatcher, RunService
from refluxo.runtime.due import expected_at
from refluxo.runtime.ports import AppendedResult, RunRecord, StepCommit
from tests.support.clock import FakeClock
from tests.support.firestore_rpcs import count_rpcs
from tests.support.google_errors import google_error
from tests.support.stores import history_of, new_record

DAY_MS = 86_400_000


class CountingClient:
    """A real ``firestore.Client`` that counts the RPCs it sends and can fail stamping.

    While ``fail_stamps`` holds an error, a batch that only updates results (the stamping
    of ``expireAt`` after a run finished) raises it instead of reaching the emulator.
    """

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self.rpcs: Counter[str] = count_rpcs(client)
        self.fail_stamps: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch(self) -> Any:
        batch: Any = self._client.batch()
        commit = batch.commit

        def guarded(*args: Any, **kwargs: Any) -> Any:
            stamps = all(
                write.update.name.split("/")[-2:-1] == ["results"] for write in batch._write_pbs
            )
            if self.fail_stamps is not None and stamps:
                raise self.fail_stamps
            return commit(*args, **kwargs)

        batch.commit = guarded
        return batch


@pytest.fixture
def counting(firestore_client: firestore.Client) -> CountingClient:
    return CountingClient(firestore_client)


def make_store(
    counting: CountingClient, prefix: str, clock: FakeClock, retention_days: int | None = None
) -> FirestoreStore:
    return FirestoreStore(
        counting,  # type: ignore[arg-type]
        prefix=prefix,
        clock=clock,
        max_attempts=2,
        backoff_ms=0,
        sleep=lambda _: None,
        retention_days=retention_days,
    )


@pytest.fixture
def store(counting: CountingClient, firestore_prefix: str, clock: FakeClock) -> FirestoreStore:
    return make_store(counting, firestore_prefix, clock)


@pytest.fixture
def kept(counting: CountingClient, firestore_prefix: str, clock: FakeClock) -> FirestoreStore:
    """A store keeping finished runs 30 days."""
    return make_store(counting, firestore_prefix, clock, retention_days=30)


def head_ref(store: FirestoreStore, run_id: str) -> Any:
    return store.client.collection(f"{store.prefix}_runs").document(run_document_id(run_id))


def head_data(store: FirestoreStore, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] | None = head_ref(store, run_id).get().to_dict()
    assert data is not None
    return data


def results_data(store: FirestoreStore, run_id: str) -> dict[str, dict[str, Any]]:
    """Every result document of the run, by name."""
    results = head_ref(store, run_id).collection("results").stream()
    return {doc.id: doc.to_dict() for doc in results}


def loaded(store: FirestoreStore, run_id: str = "run") -> RunRecord:
    record = store.load_run(run_id)
    assert record is not None
    return record


def advance(
    store: FirestoreStore, run_id: str, results: Sequence[tuple[str, Any]] = (), **changes: Any
) -> RunRecord:
    """Commit the next head of ``run_id`` (at its revision) appending ``results``."""
    record = loaded(store, run_id)
    assert isinstance(record.token, HeadRevision)
    counts = node_counts_of(record.token.data)
    appended = []
    for offset, (node_id, output) in enumerate(results):
        index = counts.get(node_id, 0)
        counts[node_id] = index + 1
        result = NodeResult(output=output, timestamp=5, attempt=1)
        appended.append(AppendedResult(record.result_count + offset, node_id, index, result))
    commit = StepCommit(
        run_id=run_id,
        expected_version=record.version,
        snapshot=record.snapshot.model_copy(update={"version": record.version + 1, **changes}),
        results=appended,
        expected_token=record.token,
    )
    outcome = store.commit(commit)
    assert outcome.committed
    assert outcome.record is not None
    return outcome.record


def grow(store: FirestoreStore, run_id: str, node_id: str, count: int) -> None:
    """Append ``count`` results of ``node_id`` (outputs 0..count-1), 400 per commit."""
    done = 0
    while done < count:
        size = min(400, count - done)
        advance(store, run_id, [(node_id, done + i) for i in range(size)])
        done += size


# -- spread names -------------------------------------------------------------------------------


def test_heads_are_named_by_a_hash_of_the_run_id_which_they_keep(
    store: FirestoreStore, clock: FakeClock
) -> None:
    ids = ["order-1", "order-2", "order-3", "msg-1234567890"]
    for run_id in ids:
        assert store.create_run(new_record(run_id, created_at=clock.now)).committed
    names = [doc.id for doc in store.client.collection(f"{store.prefix}_runs").stream()]
    assert sorted(names) == sorted(run_document_id(run_id) for run_id in ids)
    for run_id in ids:
        name = run_document_id(run_id)
        assert len(name) == 32
        assert set(name) <= set("0123456789abcdef")
        assert run_id not in name
        assert head_data(store, run_id)["runId"] == run_id
        assert loaded(store, run_id).run_id == run_id
    # Sequential ids are no longer neighbours: the names share no common prefix.
    assert len({run_document_id(run_id)[:2] for run_id in ids}) > 1
    # Everything that returns records returns the real ids.
    assert [run.run_id for run in store.list_runs().runs] == sorted(ids, reverse=True)
    assert sorted(run.run_id for run in store.overdue_runs(clock.now).runs) == sorted(ids)


def test_an_unknown_run_or_a_head_holding_another_id_is_no_run(store: FirestoreStore) -> None:
    assert store.load_run("nobody") is None
    assert store.create_run(new_record("run")).committed
    # A document at the name of "intruder" that is not its head (a collision, an old layout).
    head_ref(store, "intruder").set(head_data(store, "run"))
    assert store.load_run("intruder") is None
    assert loaded(store, "run").run_id == "run"


def test_results_are_named_by_node_and_index(store: FirestoreStore) -> None:
    assert store.create_run(new_record("run")).committed
    advance(store, "run", [("a/b", 1), ("../c", 2), ("a/b", 3)])
    stored = results_data(store, "run")
    assert set(stored) == {
        result_document_id("a/b", 0),
        result_document_id("../c", 0),
        result_document_id("a/b", 1),
    }
    first = stored[result_document_id("a/b", 1)]
    assert (first["seq"], first["nodeId"], first["nodeIndex"]) == (2, "a/b", 1)
    assert [e.node_id for e in store.timeline("run")] == ["a/b", "../c", "a/b"]


# -- history by name ----------------------------------------------------------------------------


def test_history_reads_results_by_name_never_by_query(
    store: FirestoreStore, counting: CountingClient
) -> None:
    assert store.create_run(new_record("run")).committed
    count = 2 * HISTORY_BATCH + 100
    grow(store, "run", "it", count)
    advance(store, "run", [("other", "x")])
    record = loaded(store, "run")

    history = store.history(record)
    counting.rpcs.clear()
    assert history.count("it") == count
    assert history.node_ids() == ["it", "other"]
    assert counting.rpcs == Counter()  # the record's counts: nothing read

    for index in (0, count // 2, count - 1):
        counting.rpcs.clear()
        assert history.get("it", index).output == index
        assert counting.rpcs == Counter({"batch_get_documents": 1})  # one get, no query

    counting.rpcs.clear()
    with pytest.raises(IndexError):
        history.get("it", count)  # past the record's count: known without a read
    with pytest.raises(IndexError):
        history.get("never ran", 0)
    assert counting.rpcs == Counter()

    counting.rpcs.clear()
    assert [r.output for r in history.all("it")] == list(range(count))
    assert counting.rpcs == Counter({"batch_get_documents": 3})  # 1,100 names, 500 a batch
    assert [r.output for r in history.all("other")] == ["x"]
    assert history.all("never ran") == []

    # Without the record's counts (a record from elsewhere): the counts are one read.
    bare = store.history(dataclasses.replace(record, token=None))
    counting.rpcs.clear()
    assert bare.get("it", 7).output == 7
    assert bare.count("it") == count
    assert counting.rpcs == Counter({"batch_get_documents": 2})
    assert "run_query" not in counting.rpcs


def test_a_result_that_vanished_is_not_mistaken_for_a_short_history(store: FirestoreStore) -> None:
    assert store.create_run(new_record("run")).committed
    advance(store, "run", [("n", 0), ("n", 1), ("n", 2)])
    head_ref(store, "run").collection("results").document(result_document_id("n", 1)).delete()
    history = history_of(store, "run")
    with pytest.raises(IndexError):
        history.get("n", 1)
    with pytest.raises(Exception, match="1 of the 3 results of node 'n'"):
        history.all("n")


# -- overdue runs -------------------------------------------------------------------------------


@given(
    st.lists(
        st.one_of(st.none(), st.integers(min_value=0, max_value=10 * DUE_SLACK_MS)),
        min_size=1,
        max_size=30,
    )
)
def test_the_stored_due_time_stays_within_the_slack_of_the_exact_one(
    expectations: list[int | None],
) -> None:
    stored: int | None = None
    for expected in expectations:
        stored = stored_due_at(stored, expected)
        if expected is None:
            assert stored is None
        else:
            assert stored is not None
            assert expected - DUE_SLACK_MS <= stored <= expected


def test_due_at_is_rewritten_only_when_it_leaves_the_slack(
    store: FirestoreStore, clock: FakeClock
) -> None:
    start = clock.now
    assert store.create_run(new_record("run", created_at=start)).committed

    def stored() -> Any:
        return head_data(store, "run").get("dueAt")

    assert stored() == start
    writes = 0
    for _ in range(30):  # a step every 5 s for 150 s: rewritten twice, not 30 times
        clock.advance(5_000)
        before = stored()
        record = advance(store, "run", [("n", clock.now)])
        expected = expected_at(record.snapshot, record.updated_at)
        assert expected == clock.now
        assert expected - DUE_SLACK_MS <= stored() <= expected
        writes += stored() != before
    assert writes == 2

    # A retry later than the slack: rewritten to it. Then due now again: earlier, rewritten.
    retry_at = clock.now + 10 * DUE_SLACK_MS
    advance(store, "run", status=SnapshotStatus.ERROR, retry_state=RetryState("n", 1, retry_at))
    assert stored() == retry_at
    clock.advance(1_000)
    advance(store, "run", status=SnapshotStatus.ACTIVE, retry_state=None)
    assert stored() == clock.now
    # Waiting for a caller, then finished: nothing expected, no field (no index entry).
    advance(store, "run", status=SnapshotStatus.PAUSED)
    assert "dueAt" not in head_data(store, "run")
    advance(store, "run", status=SnapshotStatus.ACTIVE)
    assert stored() == clock.now
    advance(store, "run", status=SnapshotStatus.COMPLETED)
    assert "dueAt" not in head_data(store, "run")
    assert store.overdue_runs(2**62).runs == []


def test_overdue_pages_skip_runs_expected_within_the_slack_and_stay_full(
    store: FirestoreStore, clock: FakeClock
) -> None:
    start = clock.now
    for index in range(8):
        assert store.create_run(new_record(f"r{index}", created_at=start)).committed
    # Half of them step 30 s later: their stored dueAt stays at the start (within the
    # slack), their exact expectation moves on.
    clock.advance(30_000)
    for index in range(0, 8, 2):
        advance(store, f"r{index}", [("n", index)])
    assert all(head_data(store, f"r{i}")["dueAt"] == start for i in range(8))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = store.overdue_runs(start + 1_000, limit=2, cursor=cursor)
        pages += 1
        seen += [run.run_id for run in page.runs]
        if page.next_cursor is None:
            break
        assert len(page.runs) == 2  # read on past the skipped ones
        cursor = page.next_cursor
    assert seen == ["r1", "r3", "r5", "r7"]
    assert pages == 2
    assert [r.run_id for r in store.overdue_runs(clock.now).runs] == [
        "r1",
        "r3",
        "r5",
        "r7",
        "r0",
        "r2",
        "r4",
        "r6",
    ]


def test_one_overdue_call_reads_a_bounded_number_of_documents(
    store: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    """A burst of runs expected just after the cutoff (within the slack) is skipped a
    chunk at a time, within a budget: never a query per run, never the whole band."""
    start = clock.now
    for index in range(250):
        assert store.create_run(new_record(f"b{index:03d}", created_at=start)).committed
    clock.advance(30_000)  # each steps 30 s later: stored dueAt stays at start (slack)
    for index in range(250):
        advance(store, f"b{index:03d}", [("n", index)])
    counting.rpcs.clear()
    page = store.overdue_runs(start + 1_000, limit=1)
    assert page.runs == []  # none is overdue at that cutoff...
    assert page.next_cursor is not None  # ...and the band is not read to its end
    assert counting.rpcs["run_query"] <= 2
    seen_queries = 0
    cursor: str | None = page.next_cursor
    while cursor is not None:
        counting.rpcs.clear()
        page = store.overdue_runs(start + 1_000, limit=1, cursor=cursor)
        seen_queries += counting.rpcs["run_query"]
        cursor = page.next_cursor
    assert seen_queries <= 4  # the rest of the band, a chunk per query


# -- retention ------------------------------------------------------------------------------------


def expiry(finished_at: int, days: int = 30) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(finished_at / 1000, tz=datetime.UTC) + (
        datetime.timedelta(days=days)
    )


def test_a_finished_run_and_all_its_results_expire_and_an_active_one_never(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    for run_id in ("done", "active", "waiting", "retrying"):
        assert kept.create_run(new_record(run_id, created_at=clock.now)).committed
        advance(kept, run_id, [("a", 1), ("b", 2), ("a", 3)])
    advance(kept, "waiting", [("c", 4)], status=SnapshotStatus.PAUSED)
    advance(kept, "retrying", status=SnapshotStatus.ERROR, retry_state=RetryState("a", 1, 0))
    clock.advance(1_000)
    counting.rpcs.clear()
    advance(kept, "done", [("end", 5)], status=SnapshotStatus.COMPLETED)
    # Few results: stamped in the finishing commit itself, one RPC.
    assert counting.rpcs == Counter({"commit": 1, "batch_get_documents": 1})  # + load_run

    head = head_data(kept, "done")
    assert head["expireAt"] == expiry(clock.now)
    assert "retentionPending" not in head
    results = results_data(kept, "done")
    assert len(results) == 4
    assert all(data["expireAt"] == expiry(clock.now) for data in results.values())

    for run_id in ("active", "waiting", "retrying"):
        assert "expireAt" not in head_data(kept, run_id)
        assert all("expireAt" not in data for data in results_data(kept, run_id).values())
    assert kept.finish_retention() == 0


def test_many_results_are_stamped_in_batches_after_the_finishing_commit(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    assert kept.create_run(new_record("run", created_at=clock.now)).committed
    grow(kept, "run", "it", 1_200)
    clock.advance(DAY_MS)
    counting.rpcs.clear()
    finished = advance(kept, "run", [("end", "x")], status=SnapshotStatus.FAILED)
    # The finishing commit, three batches of stamps (500, 500, 200), clearing the marker.
    assert counting.rpcs["commit"] == 1 + 3 + 1
    assert "run_query" not in counting.rpcs
    head = head_data(kept, "run")
    assert head["expireAt"] == expiry(clock.now)
    assert "retentionPending" not in head
    results = results_data(kept, "run")
    assert len(results) == 1_201
    assert {data["expireAt"] for data in results.values()} == {expiry(clock.now)}
    # The record the commit returned is the head as it is now.
    assert finished.token == loaded(kept, "run").token


@pytest.mark.parametrize("inline", [100, 1])
def test_a_finishing_commit_without_a_revision_stamps_the_results_too(
    kept: FirestoreStore, clock: FakeClock, inline: int
) -> None:
    """Resume and cancel commit in a transaction (no revision): the same stamping."""
    kept.inline_retention = inline
    assert kept.create_run(new_record("run", created_at=clock.now)).committed
    advance(kept, "run", [("a", 0), ("b", 1), ("a", 2)])
    record = loaded(kept, "run")
    clock.advance(1_000)
    cancel = StepCommit(
        "run",
        record.version,
        record.snapshot.model_copy(
            update={"version": record.version + 1, "status": SnapshotStatus.FAILED}
        ),
    )
    assert kept.commit(cancel).committed
    head = head_data(kept, "run")
    assert head["expireAt"] == expiry(clock.now)
    assert "retentionPending" not in head
    results = results_data(kept, "run")
    assert len(results) == 3
    assert {data["expireAt"] for data in results.values()} == {expiry(clock.now)}


@pytest.mark.parametrize(
    "error",
    [
        google_error(exceptions.PermissionDenied, "stamping refused"),
        google_error(exceptions.ServiceUnavailable, "down while stamping"),
    ],
)
def test_a_stamping_cut_short_is_completed_by_the_sweep(
    kept: FirestoreStore,
    counting: CountingClient,
    clock: FakeClock,
    error: Exception,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept.inline_retention = 2  # stamp after the commit from three earlier results
    assert kept.create_run(new_record("run", created_at=clock.now)).committed
    advance(kept, "run", [("a", 0), ("b", 1), ("a", 2)])
    assert kept.create_run(new_record("other", created_at=clock.now)).committed
    clock.advance(5_000)

    counting.fail_stamps = error
    with caplog.at_level("WARNING", logger="refluxo.firestore"):
        done = advance(kept, "run", [("end", 3)], status=SnapshotStatus.COMPLETED)
    assert done.status == SnapshotStatus.COMPLETED  # the commit itself is applied
    assert "finish_retention will complete it" in caplog.text
    head = head_data(kept, "run")
    assert head["retentionPending"] is True
    assert head["expireAt"] == expiry(clock.now)
    results = results_data(kept, "run")
    stamped = {name for name, data in results.items() if "expireAt" in data}
    assert stamped == {result_document_id("end", 0)}  # only the commit's own result

    # The sweep finds the marker; while stamping still fails it leaves it in place.
    assert kept.finish_retention() == 0
    assert head_data(kept, "run")["retentionPending"] is True
    counting.fail_stamps = None
    counting.rpcs.clear()
    assert kept.finish_retention() == 1
    assert counting.rpcs["run_query"] == 1  # retentionPending == true
    head = head_data(kept, "run")
    assert "retentionPending" not in head
    assert {data["expireAt"] for data in results_data(kept, "run").values()} == {expiry(clock.now)}
    assert kept.finish_retention() == 0
    assert "expireAt" not in head_data(kept, "other")


def test_the_sweep_stamps_what_remains_when_some_results_expired_already(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    kept.inline_retention = 0
    assert kept.create_run(new_record("run", created_at=clock.now)).committed
    advance(kept, "run", [("a", 0), ("a", 1), ("a", 2)])
    counting.fail_stamps = google_error(exceptions.PermissionDenied, "refused")
    advance(kept, "run", status=SnapshotStatus.COMPLETED)
    counting.fail_stamps = None
    # The TTL policy deleted one result before the sweep ran.
    head_ref(kept, "run").collection("results").document(result_document_id("a", 1)).delete()
    assert kept.finish_retention() == 1
    results = results_data(kept, "run")
    assert set(results) == {result_document_id("a", 0), result_document_id("a", 2)}
    assert all("expireAt" in data for data in results.values())
    assert "retentionPending" not in head_data(kept, "run")


def test_without_retention_nothing_expires(store: FirestoreStore, clock: FakeClock) -> None:
    assert store.create_run(new_record("run", created_at=clock.now)).committed
    advance(store, "run", [("a", 0)], status=SnapshotStatus.COMPLETED)
    assert "expireAt" not in head_data(store, "run")
    assert all("expireAt" not in data for data in results_data(store, "run").values())


def test_a_run_stored_finished_expires_from_its_creation(
    kept: FirestoreStore, clock: FakeClock
) -> None:
    assert kept.create_run(new_record("run", created_at=clock.now, status="failed")).committed
    assert head_data(kept, "run")["expireAt"] == expiry(clock.now)


def test_the_cloud_backend_keeps_finished_runs_for_the_configured_days(
    firestore_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refluxo.host.compose import build_runtime
    from refluxo.host.settings import load_settings
    from refluxo.runtime import App

    env = {
        "REFLUXO_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": "demo-test",
        "REFLUXO_REGION": "europe-west1",
        "REFLUXO_TASKS_QUEUE": "steps",
        "REFLUXO_STEP_URL": "https://dispatcher.example.run.app/tasks/step",
        "REFLUXO_TASKS_SERVICE_ACCOUNT": "invoker@acme.iam.gserviceaccount.com",
        "REFLUXO_OIDC_AUDIENCE": "https://dispatcher.example.run.app",
        "REFLUXO_API_KEY": "k" * 32,
        "REFLUXO_TASKS_EMULATOR_HOST": "127.0.0.1:1",
    }
    for days, expected in (("12", 12), ("", None)):
        settings = load_settings({**env, "REFLUXO_RUN_RETENTION_DAYS": days})
        with monkeypatch.context() as patch:
            patch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
            runtime: Any = build_runtime(settings, App())
        try:
            store = runtime.service.store
            assert isinstance(store, FirestoreStore)
            assert store.retention_days == expected
        finally:
            runtime.stop()


def test_the_reconciler_s_pass_completes_an_interrupted_stamping(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    kept.inline_retention = 1
    assert kept.create_run(new_record("run", created_at=clock.now)).committed
    advance(kept, "run", [("a", 0), ("b", 1)])
    counting.fail_stamps = google_error(exceptions.ServiceUnavailable, "down while stamping")
    advance(kept, "run", [("end", 2)], status=SnapshotStatus.COMPLETED)
    assert head_data(kept, "run")["retentionPending"] is True
    counting.fail_stamps = None

    scheduled: list[Any] = []

    class Recording:
        def schedule(self, delivery: Any) -> None:
            scheduled.append(delivery)

    service = RunService(Dispatcher(App(clock=clock), kept, Recording()))
    report = service.reconcile(grace_ms=0)
    assert (report.examined, report.rescheduled, scheduled) == (0, 0, [])  # finished: not due
    assert "retentionPending" not in head_data(kept, "run")
    assert {data["expireAt"] for data in results_data(kept, "run").values()} == {expiry(clock.now)}
    service.close()
