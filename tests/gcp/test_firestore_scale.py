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
    end_document_id,
    end_fields,
    node_counts_of,
    result_document_id,
    run_document_id,
    shard_document_ids,
    stored_due_at,
)
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.model import NodeResult, RetryState, SnapshotStatus
from refluxo.runtime import App, Dispatcher, RunService
from refluxo.runtime.due import expected_at
from refluxo.runtime.ports import AppendedResult, ChildEnd, JoinCount, RunRecord, StepCommit
from tests.support.clock import FakeClock
from tests.support.firestore_rpcs import count_rpcs
from tests.support.google_errors import google_error
from tests.support.stores import history_of, new_record

DAY_MS = 86_400_000


class CountingClient:
    """A real ``firestore.Client`` that counts the RPCs it sends and can fail stamping.

    While ``fail_stamps`` holds an error, a batch that only updates documents of the
    collections ``stamped`` (results and the join ledger's: the stamping of ``expireAt``
    after a run finished) raises it instead of reaching the emulator. ``ListDocuments``
    (the listing of a join ledger) is counted as ``list_documents``.
    """

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self.rpcs: Counter[str] = count_rpcs(client)
        self.fail_stamps: Exception | None = None
        self.stamped = {"results", "ends", "counts", "inputs"}
        api = client._firestore_api
        listing = api.list_documents

        def list_documents(*args: Any, **kwargs: Any) -> Any:
            self.rpcs["list_documents"] += 1
            return listing(*args, **kwargs)

        api.list_documents = list_documents

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch(self) -> Any:
        batch: Any = self._client.batch()
        commit = batch.commit

        def guarded(*args: Any, **kwargs: Any) -> Any:
            stamps = all(
                write.update.name.split("/")[-2] in self.stamped
                and list(write.update_mask.field_paths) == ["expireAt"]
                for write in batch._write_pbs
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
    """Resume and cancel commit without a revision (the store reads the head): the same
    stamping."""
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


# -- retention of the join ledger ---------------------------------------------------------------


def ended(index: int, parent: str = "parent") -> ChildEnd:
    """The end of child ``index``: every third one failed."""
    if index % 3 == 1:
        return ChildEnd(index, f"{parent}-child-{index}", "failed", error="ValueError: bad")
    return ChildEnd(index, f"{parent}-child-{index}", "completed", {"n": index})


def wait_for_children(store: FirestoreStore, run_id: str, count: int) -> int:
    """Pause ``run_id`` waiting for ``count`` children, as the dispatcher marks a wait; the
    version of the wait (the ledger's key)."""
    version = loaded(store, run_id).version + 1
    marker = {"waiting": True, "version": version, "count": count, "concurrency": count}
    advance(store, run_id, status=SnapshotStatus.PAUSED, metadata={"childRuns": marker})
    return version


def join_children(store: FirestoreStore, run_id: str, count: int) -> None:
    """Resume ``run_id`` after its wait, with the summary the runtime leaves."""
    summary = {"waiting": False, "ended": count, "failed": 0}
    advance(store, run_id, status=SnapshotStatus.ACTIVE, metadata={"childRuns": summary})


def ledger_data(
    store: FirestoreStore, run_id: str, versions: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Every document of the waits ``versions`` of the run, by ``version/collection/name``,
    read by queries (not by the listing under test)."""
    docs: dict[str, dict[str, Any]] = {}
    for version in versions:
        join = head_ref(store, run_id).collection("joins").document(str(version))
        for collection in ("counts", "ends", "inputs"):
            for doc in join.collection(collection).stream():
                docs[f"{version}/{collection}/{doc.id}"] = doc.to_dict()
    return docs


def expiries(docs: dict[str, dict[str, Any]]) -> set[Any]:
    return {data.get("expireAt") for data in docs.values()}


def parent_with_two_waits(store: FirestoreStore, counting: CountingClient) -> list[int]:
    """``parent``: a result, a wait for 20 children (150 inputs: two input documents, all 16
    counter shards), joined, then a wait for 3 (one input document), all ended; left
    waiting. The waits' versions."""
    assert store.create_run(new_record("parent")).committed
    advance(store, "parent", [("a", 0)])
    first = wait_for_children(store, "parent", 20)
    assert head_data(store, "parent")["hasJoins"] is True  # set by the wait's commit
    store.put_child_inputs("parent", first, "d1", list(range(150)))
    counting.rpcs.clear()
    for index in range(20):
        store.record_child_end("parent", first, ended(index))
    # A parent still waiting: each end one batch and one read (shards and head together).
    assert counting.rpcs == Counter({"commit": 20, "batch_get_documents": 20})
    join_children(store, "parent", 20)
    second = wait_for_children(store, "parent", 3)
    store.put_child_inputs("parent", second, "d2", ["x", "y", "z"])
    for index in range(3):
        store.record_child_end("parent", second, ended(index))
    ledger = ledger_data(store, "parent", [first, second])
    assert len(ledger) == (16 + 20 + 2) + (3 + 3 + 1)
    assert expiries(ledger) == {None}  # an unfinished parent's ledger never expires
    return [first, second]


@pytest.mark.parametrize("revision", [True, False], ids=["at-revision", "reading-head"])
def test_a_finished_parent_s_join_ledger_expires_with_it(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock, revision: bool
) -> None:
    versions = parent_with_two_waits(kept, counting)
    join_children(kept, "parent", 3)
    clock.advance(DAY_MS)
    counting.rpcs.clear()
    if revision:
        done = advance(kept, "parent", [("end", 1)], status=SnapshotStatus.COMPLETED)
    else:  # a cancel: no revision, the store reads the head
        record = loaded(kept, "parent")
        snapshot = record.snapshot.model_copy(
            update={"version": record.version + 1, "status": SnapshotStatus.FAILED}
        )
        outcome = kept.commit(StepCommit("parent", record.version, snapshot))
        assert outcome.committed
        assert outcome.record is not None
        done = outcome.record
    rpcs = Counter(counting.rpcs)

    head = head_data(kept, "parent")
    assert head["expireAt"] == expiry(clock.now)
    assert "retentionPending" not in head
    ledger = ledger_data(kept, "parent", versions)
    assert len(ledger) == 45
    assert expiries(ledger) == {expiry(clock.now)}  # the same expireAt as the head
    assert expiries(results_data(kept, "parent")) == {expiry(clock.now)}
    # The joins listed (1), then each wait's counts, ends and inputs (2 x 3); the 45
    # documents stamped in one batch after the commit, then the marker cleared.
    assert rpcs["list_documents"] == 1 + 2 * 3
    assert rpcs["commit"] == 3
    assert "run_query" not in rpcs
    if revision:
        assert done.token == loaded(kept, "parent").token  # the head as it is now
    # The ledger still reads as before.
    assert [end.index for end in kept.child_ends("parent", versions[0])] == list(range(20))
    assert kept.child_input("parent", versions[0], "d1", 149) == 149
    assert kept.finish_retention() == 0


def test_a_join_ledger_larger_than_a_batch_is_stamped_in_batches(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    assert kept.create_run(new_record("parent")).committed
    version = wait_for_children(kept, "parent", 600)
    join = head_ref(kept, "parent").collection("joins").document(str(version))
    # Written as record_child_end writes them, in bulk (600 recordings take a while).
    for first in (0, 300):
        batch = kept.client.batch()
        for index in range(first, first + 300):
            batch.create(
                join.collection("ends").document(end_document_id(index)), end_fields(ended(index))
            )
        batch.commit()
    for shard in shard_document_ids():
        join.collection("counts").document(shard).set({"shard": shard, "ended": 37, "failed": 0})
    join_children(kept, "parent", 600)
    clock.advance(DAY_MS)
    counting.rpcs.clear()
    advance(kept, "parent", status=SnapshotStatus.COMPLETED)
    # The finishing commit, 616 stamps in two batches (500, 116), clearing the marker.
    assert counting.rpcs["commit"] == 1 + 2 + 1
    assert "retentionPending" not in head_data(kept, "parent")
    ledger = ledger_data(kept, "parent", [version])
    assert len(ledger) == 616
    assert expiries(ledger) == {expiry(clock.now)}


@pytest.mark.parametrize(
    "interruption",
    [
        google_error(exceptions.PermissionDenied, "stamping refused"),
        google_error(exceptions.ServiceUnavailable, "down while stamping"),
        "crash",
    ],
    ids=["refused", "unavailable", "crash"],
)
def test_an_interrupted_ledger_stamping_is_completed_by_the_sweep(
    kept: FirestoreStore,
    counting: CountingClient,
    clock: FakeClock,
    interruption: Exception | str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    versions = parent_with_two_waits(kept, counting)
    join_children(kept, "parent", 3)
    clock.advance(5_000)
    with monkeypatch.context() as patch:
        if interruption == "crash":
            # The process dies right after the finishing commit: nothing after it runs.
            patch.setattr(kept, "_stamp_after_commit", lambda prepared, after, outcome: outcome)
        else:
            assert isinstance(interruption, Exception)
            counting.fail_stamps = interruption
            counting.stamped = {"ends", "counts", "inputs"}  # the results would pass
        with caplog.at_level("WARNING", logger="refluxo.firestore"):
            done = advance(kept, "parent", [("end", 1)], status=SnapshotStatus.COMPLETED)
    assert done.status == SnapshotStatus.COMPLETED  # the commit itself is applied
    if interruption != "crash":
        assert "finish_retention will complete it" in caplog.text
    head = head_data(kept, "parent")
    # Few results (stamped in the commit itself), yet the marker: the ledger is pending.
    assert head["retentionPending"] is True
    assert head["expireAt"] == expiry(clock.now)
    assert expiries(results_data(kept, "parent")) == {expiry(clock.now)}
    assert expiries(ledger_data(kept, "parent", versions)) == {None}

    if interruption != "crash":
        assert kept.finish_retention() == 0  # still failing: the marker stays
        assert head_data(kept, "parent")["retentionPending"] is True
        counting.fail_stamps = None
    counting.rpcs.clear()
    assert kept.finish_retention() == 1
    assert counting.rpcs["run_query"] == 1  # retentionPending == true
    assert "retentionPending" not in head_data(kept, "parent")
    ledger = ledger_data(kept, "parent", versions)
    assert len(ledger) == 45
    assert expiries(ledger) == {expiry(clock.now)}
    assert kept.finish_retention() == 0


def test_the_sweep_stamps_the_ledger_documents_that_remain(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    versions = parent_with_two_waits(kept, counting)
    join_children(kept, "parent", 3)
    counting.fail_stamps = google_error(exceptions.PermissionDenied, "refused")
    advance(kept, "parent", status=SnapshotStatus.COMPLETED)
    counting.fail_stamps = None
    # The TTL policy, or a sweep of its own, deleted an end before this sweep ran.
    join = head_ref(kept, "parent").collection("joins").document(str(versions[0]))
    join.collection("ends").document(end_document_id(7)).delete()
    assert kept.finish_retention() == 1
    ledger = ledger_data(kept, "parent", versions)
    assert len(ledger) == 44
    assert expiries(ledger) == {expiry(clock.now)}


def test_a_child_end_recorded_after_its_parent_finished_expires_with_it(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    """A report that found its parent waiting, then recorded after the parent's cancel
    (and after its ledger was listed): the recording stamps its end and shard itself."""
    assert kept.create_run(new_record("parent")).committed
    version = wait_for_children(kept, "parent", 40)
    kept.record_child_end("parent", version, ended(0))
    record = loaded(kept, "parent")
    cancel = record.snapshot.model_copy(
        update={"version": record.version + 1, "status": SnapshotStatus.FAILED}
    )
    assert kept.commit(StepCommit("parent", record.version, cancel)).committed
    assert expiries(ledger_data(kept, "parent", [version])) == {expiry(clock.now)}

    counting.rpcs.clear()
    assert kept.record_child_end("parent", version, ended(17)) == JoinCount(2, 0)
    # The recording, one read of the shards and the head's expireAt, the stamp.
    assert counting.rpcs == Counter({"commit": 2, "batch_get_documents": 1})
    ledger = ledger_data(kept, "parent", [version])
    assert ledger[f"{version}/ends/{end_document_id(17)}"]["expireAt"] == expiry(clock.now)
    assert ledger[f"{version}/counts/01"]["expireAt"] == expiry(clock.now)  # 17 % 16
    assert expiries(ledger) == {expiry(clock.now)}

    # When that stamp fails, the head is marked for the sweep.
    counting.fail_stamps = google_error(exceptions.PermissionDenied, "refused")
    assert kept.record_child_end("parent", version, ended(4)) == JoinCount(3, 1)
    counting.fail_stamps = None
    assert head_data(kept, "parent")["retentionPending"] is True
    assert None in expiries(ledger_data(kept, "parent", [version]))
    assert kept.finish_retention() == 1
    assert "retentionPending" not in head_data(kept, "parent")
    assert expiries(ledger_data(kept, "parent", [version])) == {expiry(clock.now)}


def test_without_retention_a_join_ledger_never_expires(
    store: FirestoreStore, counting: CountingClient
) -> None:
    versions = parent_with_two_waits(store, counting)
    join_children(store, "parent", 3)
    counting.rpcs.clear()
    advance(store, "parent", [("end", 1)], status=SnapshotStatus.COMPLETED)
    store.record_child_end("parent", versions[1], ended(5))  # late, too
    assert "list_documents" not in counting.rpcs
    head = head_data(store, "parent")
    assert head["hasJoins"] is True
    assert "expireAt" not in head
    assert "retentionPending" not in head
    assert expiries(ledger_data(store, "parent", versions)) == {None}
    assert expiries(results_data(store, "parent")) == {None}
    assert store.finish_retention() == 0


def test_a_run_that_never_waited_for_children_lists_no_ledger(
    kept: FirestoreStore, counting: CountingClient, clock: FakeClock
) -> None:
    assert kept.create_run(new_record("run")).committed
    advance(kept, "run", [("a", 0)], status=SnapshotStatus.PAUSED, metadata={"other": 1})
    counting.rpcs.clear()
    advance(kept, "run", [("b", 1)], status=SnapshotStatus.COMPLETED)
    assert counting.rpcs == Counter({"commit": 1, "batch_get_documents": 1})  # + load_run
    head = head_data(kept, "run")
    assert "hasJoins" not in head
    assert "retentionPending" not in head
    assert head["expireAt"] == expiry(clock.now)


def test_a_map_run_by_the_runtime_leaves_a_ledger_that_expires_with_its_parent(
    kept: FirestoreStore, clock: FakeClock
) -> None:
    """The real dispatcher's waits (its ``childRuns`` metadata) mark the head, and the
    ledger it writes (inputs, ends, counts) expires with the parent."""
    from refluxo import StepResult
    from refluxo.backends.memory.scheduler import MemoryScheduler

    app = App(clock=clock)

    @app.node()
    def double(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"y": context["start"][-1].output["x"] * 2})

    def flow(node: dict[str, Any]) -> dict[str, Any]:
        start = {"id": "start", "type": "trigger"}
        return {"nodes": [start, node], "edges": [{"source": "start", "target": node["id"]}]}

    app.workflow("item", flow({"id": "d", "type": "double"}))
    items = "{{ nodes.start.output.items }}"
    app.workflow(
        "mapper",
        flow(
            {
                "id": "m",
                "type": "map",
                "data": {"items": items, "workflow": "item", "concurrency": 2},
            }
        ),
    )
    scheduler = MemoryScheduler()
    service = RunService(Dispatcher(app, kept, scheduler))
    try:
        service.start("mapper", {"items": [{"x": x} for x in range(5)]}, run_id="parent")
        scheduler.drain(service.deliver, clock)
    finally:
        service.close()
    head = head_data(kept, "parent")
    assert head["status"] == "completed"
    assert head["hasJoins"] is True
    assert "retentionPending" not in head
    summary = loaded(kept, "parent").snapshot.metadata["childRuns"]
    ledger = ledger_data(kept, "parent", [summary["version"]])
    collections = Counter(name.split("/")[1] for name in ledger)
    assert collections == Counter({"ends": 5, "counts": 5, "inputs": 1})
    assert expiries(ledger) == {head["expireAt"]}
    assert expiries(results_data(kept, "parent")) == {head["expireAt"]}
