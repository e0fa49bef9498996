"""Following a run reads it less and less often while nothing changes, and not at all
before its retry or timer is due (``run --url`` is a billed request per read)."""

from __future__ import annotations

from typing import Any

import pytest

from refluxo.host.follow import Backoff, StillRunning, follow

NOW_MS = 1_800_000_000_000


class Reader:
    """Answers the given views in turn, recording each read."""

    def __init__(self, *views: dict[str, Any]) -> None:
        self.views = list(views)
        self.reads: list[int] = []

    def get(
        self, run_id: str, *, timeline_after: int = -1, timeline_limit: int = 100
    ) -> dict[str, Any]:
        self.reads.append(timeline_after)
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]


def view(status: str, version: int, *, timeline: list[Any] | None = None, **snap: Any) -> Any:
    return {
        "runId": "r",
        "status": status,
        "version": version,
        "currentNodeId": "n",
        "snapshot": {"metadata": snap.pop("metadata", {}), **snap},
        "timeline": timeline or [],
    }


class Clock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))

    def monotonic(self) -> float:
        return sum(self.slept)

    def wall_ms(self) -> float:
        return NOW_MS + sum(self.slept) * 1000


def run_follow(reader: Reader, clock: Clock, **options: Any) -> tuple[dict[str, Any], list[str]]:
    said: list[str] = []
    final = follow(
        reader,
        "r",
        echo=said.append,
        sleep=clock.sleep,
        clock=clock.monotonic,
        wall_ms=clock.wall_ms,
        **options,
    )
    return final, said


def test_reads_back_off_from_50_ms_doubling_to_2_s_while_nothing_changes() -> None:
    reader = Reader(*[view("active", 1)] * 9, view("completed", 2))
    clock = Clock()

    final, _ = run_follow(reader, clock)

    assert final["status"] == "completed"
    assert clock.slept == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]


def test_progress_brings_the_next_read_back_to_50_ms() -> None:
    entry = {"seq": 0, "nodeId": "a", "output": 1, "attempt": 1}
    reader = Reader(
        view("active", 1), view("active", 1), view("active", 1),
        view("active", 2, timeline=[entry]), view("completed", 3),
    )  # fmt: skip
    clock = Clock()

    _, said = run_follow(reader, clock)

    assert clock.slept == [0.05, 0.1, 0.2, 0.05]
    assert said == ["  a              -> 1"]
    assert reader.reads[-1] == 0  # read on from the last result printed


def test_a_pending_retry_is_not_read_again_before_its_time() -> None:
    due = NOW_MS + 5_000
    retrying = view("error", 2, retryState={"nodeId": "n", "attempts": 1, "nextRetryAt": due})
    reader = Reader(retrying, view("completed", 3))
    clock = Clock()

    _, said = run_follow(reader, clock)

    assert clock.slept == [5.05]
    assert said[0].startswith("  ... next attempt of 'n' at ")


def test_a_timer_beyond_the_wait_stops_following_at_once() -> None:
    timed = view("paused", 2, metadata={"resumeAt": NOW_MS + 3_600_000})
    clock = Clock()

    final, said = run_follow(Reader(timed), clock, wait_s=60)

    assert final["status"] == "paused"
    assert clock.slept == []
    assert said == []


def test_a_run_that_does_not_settle_in_time_is_reported_with_its_last_view() -> None:
    clock = Clock()
    with pytest.raises(StillRunning) as still:
        run_follow(Reader(view("active", 1)), clock, timeout_s=5)
    assert still.value.view["status"] == "active"
    assert sum(clock.slept) == pytest.approx(5)


def test_backoff_starts_again_after_progress() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(3)] == [0.05, 0.1, 0.2]
    backoff.progressed()
    assert backoff.next() == 0.05


def test_a_run_waiting_for_its_child_runs_is_followed_until_they_end() -> None:
    waiting = view("paused", 3, metadata={"childRuns": {"waiting": True, "count": 2, "node": "n"}})
    done = view("completed", 5, timeline=[{"seq": 3, "nodeId": "n", "output": [1, 2]}])
    clock = Clock()

    final, said = run_follow(Reader(waiting, waiting, done), clock)

    assert final["status"] == "completed"
    assert len(clock.slept) == 2
    assert said == [
        "  ... 'n' waits for its 2 child runs",
        "  n              -> [1, 2]",
    ]


def test_a_waiting_parent_is_described_as_waiting_for_children_not_for_a_resume() -> None:
    from refluxo.host.run_text import describe, what_next

    waiting = view("paused", 3, metadata={"childRuns": {"waiting": True, "count": 12, "node": "n"}})
    assert describe(waiting) == "waiting at 'n' for its 12 child runs"
    assert not any("refluxo resume" in line for line in what_next(waiting, server=False))
    assert what_next(waiting, server=True) == [
        "the server runs its child runs; follow it with: refluxo status r",
        "if a child is paused for a resume, it holds the run: resume that child (the inspector "
        "lists them)",
    ]
