"""The SnapshotStore contract: every backend passes the same suite."""

from __future__ import annotations

import threading
from typing import Any

from refluxo.model import NodeResult, Snapshot, SnapshotStatus
from refluxo.runtime.ports import (
    AppendedResult,
    Payload,
    RunRecord,
    SnapshotStore,
    StepCommit,
)


def new_record(run_id: str, *, created_at: int = 1000, status: str = "active") -> RunRecord:
    snapshot = Snapshot(workflow_id=run_id, status=status, current_node_id="a", version=0)
    return RunRecord(
        run_id=run_id,
        workflow="wf",
        definition_version="v1",
        snapshot=snapshot,
        created_at=created_at,
        updated_at=created_at,
        input={"in": 1},
        pending=Payload({"in": 1}),
    )


def step(
    store: SnapshotStore, record: RunRecord, results: list[tuple[str, Any]], **changes: Any
) -> StepCommit:
    """A commit appending ``results`` (node id, output) after ``record``'s history."""
    history = store.history(record.run_id)
    counts: dict[str, int] = {}
    appended = []
    for offset, (node_id, output) in enumerate(results):
        if node_id not in counts:
            counts[node_id] = history.count(node_id)
        appended.append(
            AppendedResult(
                seq=record.result_count + offset,
                node_id=node_id,
                node_index=counts[node_id],
                result=NodeResult(output=output, timestamp=5, attempt=1),
            )
        )
        counts[node_id] += 1
    snapshot = record.snapshot.model_copy(update={"version": record.version + 1, **changes})
    return StepCommit(
        run_id=record.run_id, expected_version=record.version, snapshot=snapshot, results=appended
    )


def test_create_load_and_duplicate_create(store: SnapshotStore) -> None:
    record = new_record("r1")
    assert store.create_run(record).committed
    loaded = store.load_run("r1")
    assert loaded is not None
    assert loaded.snapshot == record.snapshot
    assert loaded.input == {"in": 1}
    assert loaded.pending == Payload({"in": 1})
    assert loaded.result_count == 0
    again = store.create_run(new_record("r1", created_at=2000))
    assert not again.committed
    assert again.record is not None
    assert again.record.created_at == 1000
    assert store.load_run("missing") is None


def test_commit_checks_the_version_and_appends(store: SnapshotStore) -> None:
    store.create_run(new_record("r1"))
    record = store.load_run("r1")
    assert record is not None
    first = store.commit(step(store, record, [("a", {"n": 1})], current_node_id="b"))
    assert first.committed
    after = store.load_run("r1")
    assert after is not None
    assert after.version == 1
    assert after.result_count == 1
    assert after.pending is None
    assert after.snapshot.current_node_id == "b"

    stale = store.commit(step(store, record, [("a", {"n": "stale"})]))
    assert not stale.committed
    unchanged = store.load_run("r1")
    assert unchanged == after
    assert store.history("r1").all("a") == [NodeResult(output={"n": 1}, timestamp=5, attempt=1)]


def test_commit_to_an_unknown_run_is_not_committed(store: SnapshotStore) -> None:
    ghost = new_record("ghost")
    assert not store.commit(step(store, ghost, [("a", 1)])).committed
    assert store.load_run("ghost") is None


def test_history_reads_per_node(store: SnapshotStore) -> None:
    store.create_run(new_record("r1"))
    record = store.load_run("r1")
    assert record is not None
    store.commit(step(store, record, [("it", 0), ("body", "b0"), ("it", 1)]))
    record = store.load_run("r1")
    assert record is not None
    store.commit(step(store, record, [("body", "b1"), ("end", None)]))
    history = store.history("r1")
    assert history.count("it") == 2
    assert history.count("body") == 2
    assert history.count("nothing") == 0
    assert history.get("body", 1).output == "b1"
    assert [r.output for r in history.all("it")] == [0, 1]
    assert history.node_ids() == ["it", "body", "end"]
    timeline = store.timeline("r1")
    assert [(e.seq, e.node_id) for e in timeline] == [
        (0, "it"),
        (1, "body"),
        (2, "it"),
        (3, "body"),
        (4, "end"),
    ]
    assert [e.seq for e in store.timeline("r1", after_seq=2, limit=1)] == [3]


def test_errors_and_null_outputs_round_trip(store: SnapshotStore) -> None:
    store.create_run(new_record("r1"))
    record = store.load_run("r1")
    assert record is not None
    failure = NodeResult(output=None, timestamp=9, attempt=2, error="ValueError: bad")
    commit = StepCommit(
        run_id="r1",
        expected_version=0,
        snapshot=record.snapshot.model_copy(update={"version": 1, "status": SnapshotStatus.FAILED}),
        results=[AppendedResult(0, "a", 0, failure)],
        pending=Payload(None),
    )
    assert store.commit(commit).committed
    loaded = store.load_run("r1")
    assert loaded is not None
    assert loaded.status == "failed"
    assert loaded.pending == Payload(None)
    assert store.history("r1").get("a", 0) == failure


def test_list_by_status_newest_first_in_pages(store: SnapshotStore) -> None:
    for index in range(7):
        status = "paused" if index % 2 else "active"
        store.create_run(new_record(f"r{index}", created_at=1000 + index, status=status))
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_runs(status=SnapshotStatus.ACTIVE, limit=2, cursor=cursor)
        seen += [r.run_id for r in page.runs]
        assert all(r.status == "active" for r in page.runs)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["r6", "r4", "r2", "r0"]
    everything = store.list_runs(limit=50)
    assert len(everything.runs) == 7
    assert everything.next_cursor is None


def test_definitions_are_stored_once_by_version(store: SnapshotStore) -> None:
    body = {"nodes": [{"id": "a", "type": "t"}], "edges": [], "start": "a"}
    store.put_definition("v1", "wf", body)
    store.put_definition("v1", "wf", {"nodes": [], "edges": []})
    assert store.get_definition("v1") == body
    assert store.get_definition("v2") is None


def test_large_history_well_past_one_mebibyte(store: SnapshotStore) -> None:
    store.create_run(new_record("big"))
    blob = "x" * 20_000
    for index in range(80):  # 80 x 20 kB = 1.6 MB of results
        record = store.load_run("big")
        assert record is not None
        assert store.commit(step(store, record, [("n", {"i": index, "blob": blob})])).committed
    history = store.history("big")
    assert history.count("n") == 80
    assert history.get("n", 79).output == {"i": 79, "blob": blob}
    loaded = store.load_run("big")
    assert loaded is not None
    assert loaded.result_count == 80


def test_concurrent_commits_on_one_version_only_one_wins(store: SnapshotStore) -> None:
    store.create_run(new_record("race"))
    record = store.load_run("race")
    assert record is not None
    barrier = threading.Barrier(4, timeout=30)
    outcomes: list[bool] = []

    def commit(label: int) -> None:
        barrier.wait()
        outcomes.append(store.commit(step(store, record, [("a", label)])).committed)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == [False, False, False, True]
    assert store.history("race").count("a") == 1


def test_node_counts_when_provided_are_authoritative(store: SnapshotStore) -> None:
    """A store may give each head its per-node counts; if it does, they must be exact."""
    store.create_run(new_record("r1"))
    record = store.load_run("r1")
    assert record is not None
    assert record.node_counts in (None, {})
    first = store.commit(step(store, record, [("it", 0), ("body", "b0"), ("it", 1)]))
    record = store.load_run("r1")
    assert record is not None
    second = store.commit(step(store, record, [("body", "b1"), ("end", None)]))
    loaded = store.load_run("r1")
    assert loaded is not None
    expected = [("it", 2), ("body", 2), ("end", 1)]  # first-result order
    history = store.history("r1")
    assert first.committed
    assert second.committed
    assert second.record is not None
    for given in (loaded.node_counts, second.record.node_counts):
        if given is not None:
            assert list(given.items()) == expected
            assert all(history.count(node_id) == count for node_id, count in given.items())


def test_a_commit_against_the_loaded_revision_is_checked_like_a_version(
    store: SnapshotStore,
) -> None:
    """What the dispatcher does: commit with the revision of the record it loaded."""
    store.create_run(new_record("r1"))
    record = store.load_run("r1")
    assert record is not None

    def at(record: RunRecord, output: Any) -> StepCommit:
        commit = step(store, record, [("a", output)])
        return StepCommit(
            run_id=commit.run_id,
            expected_version=commit.expected_version,
            snapshot=commit.snapshot,
            results=commit.results,
            expected_revision=record.revision,
        )

    assert store.commit(at(record, "first")).committed
    after = store.load_run("r1")
    assert after is not None
    assert not store.commit(at(record, "stale")).committed
    assert store.load_run("r1") == after
    assert store.commit(at(after, "second")).committed
    assert [r.output for r in store.history("r1").all("a")] == ["first", "second"]
