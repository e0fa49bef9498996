"""Following a run from the command line until it ends, pauses, or waits too long.

``refluxo run`` and ``refluxo resume`` print each result as it is committed. They read the
run again and again, which over ``--url`` is a request each time (billed on Cloud
Functions), so reads back off: 50 ms after progress, doubling to 2 s while nothing
changes (:class:`Backoff`); and a run waiting on a retry or a timer is not read again
before that time. A run waiting longer than ``wait_s`` is left to its scheduler, and the
command says what fires it (:func:`refluxo.host.run_text.what_next`). A run waiting for
child runs is followed while they move it on; after ``wait_s`` without a step of its own
the command stops and names the children paused for a resume, which hold it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from refluxo.api.api_error import ApiError
from refluxo.host.run_text import due_at, entry_line, waiting_children
from refluxo.host.times import now_ms, when

if TYPE_CHECKING:
    from refluxo.api.client import RunReader

FIRST_DELAY_S = 0.05
MAX_DELAY_S = 2.0
PAGE = 100
"""Results read per request while following."""
HELD_SHOWN = 5
"""Children paused for a resume named when a waiting run is left to them."""


class Backoff:
    """Delays between reads: ``first`` after progress, doubling up to ``most``."""

    def __init__(self, first: float = FIRST_DELAY_S, most: float = MAX_DELAY_S) -> None:
        self.first = first
        self.most = most
        self.delay = first

    def progressed(self) -> None:
        self.delay = self.first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.most)
        return delay


class StillRunning(Exception):
    """The run did not stop within the command's time limit (the last view is kept)."""

    def __init__(self, view: dict[str, Any]) -> None:
        super().__init__(f"run {view['runId']} still {view['status']}")
        self.view = view


def settled(view: dict[str, Any], wait_s: float, now: float) -> bool:
    """Whether following ``view`` stops: it ended, waits for a resume, or waits on a retry
    or timer due more than ``wait_s`` seconds from ``now`` (epoch ms)."""
    status = view["status"]
    if status in ("completed", "failed"):
        return True
    due = due_at(view)
    if status == "paused" and due is None:
        return waiting_children(view) is None  # child runs move it on: keep following
    return due is not None and due - now > wait_s * 1000


def follow(
    client: RunReader,
    run_id: str,
    *,
    echo: Callable[[str], None],
    after: int = -1,
    wait_s: float = 60.0,
    timeout_s: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall_ms: Callable[[], float] = now_ms,
) -> dict[str, Any]:
    """Print the run's results as they are committed; return its view once it
    :func:`settled` (or raise :class:`StillRunning` after ``timeout_s``).

    A retry or timer due within ``wait_s`` is waited for (said once, with its ISO time):
    the scheduler fires it, and the run is read again at that time, not before. Results
    up to ``after`` (a ``seq``) are not printed again.
    """
    version = None
    announced: float | None = None
    waited: set[Any] = set()
    backoff = Backoff()
    deadline = clock() + timeout_s
    moved = clock()
    while True:
        view = client.get(run_id, timeline_after=after, timeline_limit=PAGE)
        entries = view.get("timeline") or []
        for entry in entries:
            after = entry["seq"]
            echo(entry_line(entry))
        if entries or view["version"] != version:
            backoff.progressed()
            moved = clock()
        version = view["version"]
        now = wall_ms()
        if settled(view, wait_s, now):
            return view
        if waiting_children(view) is not None and clock() - moved > wait_s:
            echo(_held_by(client, view, wait_s))
            return view
        if entries and after < int(view.get("resultCount", 0)) - 1:
            continue  # more results to print already (a page may end early: large results)
        children = waiting_children(view)
        if children is not None and children.get("version") not in waited:
            waited.add(children.get("version"))
            echo(
                f"  ... {view['currentNodeId']!r} waits for its {children.get('count')} child runs"
            )
        due = due_at(view)
        if due is not None and due != announced:
            announced = due
            what = "timer" if view["status"] == "paused" else "next attempt"
            echo(f"  ... {what} of {view['currentNodeId']!r} at {when(due, now)}")
        left = deadline - clock()
        if left <= 0:
            raise StillRunning(view)
        if due is not None and due > now:
            sleep(min((due - now) / 1000 + FIRST_DELAY_S, left))
            backoff.progressed()
        else:
            sleep(min(backoff.next(), left))


def _held_by(client: RunReader, view: dict[str, Any], wait_s: float) -> str:
    """What a run that waited ``wait_s`` for its child runs waits for: the first of its
    listed children paused for a resume (one read each, until :data:`HELD_SHOWN`)."""
    children = view.get("children") or {}
    held: list[str] = []
    for child_id in children.get("runIds") or []:
        try:
            child = client.get(child_id, timeline_limit=1)
        except ApiError:  # not started yet (a 404): not holding it
            continue
        resumable = child.get("status") == "paused" and due_at(child) is None
        if resumable and waiting_children(child) is None:
            held.append(child_id)
            if len(held) == HELD_SHOWN:
                break
    node = view.get("currentNodeId")
    if not held:
        return f"  ... {node!r} still waits for its child runs after {wait_s:g} s"
    shown = ", ".join(held)
    return (
        f"  ... {node!r} still waits after {wait_s:g} s; children paused for a resume: "
        f"{shown} (refluxo resume {held[0]} --payload '{{}}')"
    )


__all__ = ["Backoff", "StillRunning", "follow", "settled"]
