"""The embedded runtime under the limits of a real process: descriptors and file size.

Each test runs the runtime behind the local HTTP server in a child process
(:mod:`tests.support.sqlite_host`) whose limits it sets: a low ``RLIMIT_NOFILE``, so that
a connection leaked per request thread ends every request within a few hundred; a low
``RLIMIT_FSIZE`` (``SIGXFSZ`` ignored), so that SQLite's writes fail as they would on a
full disk, until the test raises the limit again with ``prlimit``, without a restart.
"""

from __future__ import annotations

import resource
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from refluxo.backends.sqlite.db import DEFAULT_POOL_SIZE
from tests.support.sqlite_host import HostProcess
from tests.support.waiting import wait_until

REQUESTS = 10_000
WARM_UP = 1_000
RSS_GROWTH_LIMIT_KB = 24 * 1024
"""Leaking a connection per request thread grew it by ~145 KB a request (1.3 GB here)."""


def _status(host: HostProcess, run_id: str) -> str:
    status, body = host.request("GET", f"/runs/{run_id}")
    assert status == 200, body
    value: str = body["status"]
    return value


def test_ten_thousand_requests_leave_descriptors_and_memory_flat(tmp_path: Path) -> None:
    """Every request thread reads or writes the store, and the process does not grow.

    GET /runs/{id} (nine in ten) and POST /runs, each on a new connection, so each in a
    new server thread, from four client threads, under ``ulimit -n 256``.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = {resource.RLIMIT_NOFILE: (256, hard)}
    with HostProcess(tmp_path / "runs.db", limits=limits, timeout=20.0) as host:
        status, body = host.request("POST", "/runs", {"workflow": "one"})
        assert status == 201, body
        run_id = body["runId"]
        wait_until(lambda: _status(host, run_id) == "completed", 20, "the first run")
        start = host.command("stats")

        failures: list[tuple[int, Any]] = []
        failed = threading.Event()

        def one(index: int) -> None:
            if failed.is_set():
                return
            try:
                if index % 10 == 0:
                    answer = host.request("POST", "/runs", {"workflow": "one", "input": index})
                else:
                    answer = host.request("GET", f"/runs/{run_id}?limit=5")
            except OSError as err:  # refused, reset or timed out: the server is broken
                answer = (0, repr(err))
            if not 200 <= answer[0] < 300:
                failures.append(answer)
                failed.set()

        def load(indexes: range) -> None:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(one, indexes))
            assert not failures, f"{len(failures)} requests failed, first: {failures[0]}"

        load(range(WARM_UP))
        warm = host.command("stats")
        load(range(WARM_UP, REQUESTS))

        def settled() -> bool:
            now = host.command("stats")
            grown: int = now["connections"] - start["connections"]
            return bool(now["fds"] <= start["fds"] + 2 * grown + 2)

        # Descriptors: the pool's own connections (two files each) and nothing per request.
        wait_until(settled, 20, "the server's descriptors to return to the pool's")
        end = host.command("stats")
        assert end["connections"] <= DEFAULT_POOL_SIZE
        assert end["rss_kb"] - warm["rss_kb"] < RSS_GROWTH_LIMIT_KB, (warm, end)
        wait_until(
            lambda: host.command("stats")["delivered"] >= REQUESTS // 10,
            30,
            "every started run to be delivered",
        )


def test_a_full_disk_delays_runs_and_they_go_on_when_it_has_room(tmp_path: Path) -> None:
    """Writes fail (EFBIG: "disk I/O error"/"database or disk is full") for a while.

    Meanwhile a start answers 503 ``unavailable``, the steps that were running cannot
    commit, and their runs stay active with their deliveries pending. Once the limit is
    raised, in the same process, the workers resume by themselves and every run completes.
    """
    with HostProcess(tmp_path / "runs.db", timeout=20.0) as host:
        started = []
        for index in range(3):
            status, body = host.request("POST", "/runs", {"workflow": "gated", "input": index})
            assert status == 201, body
            started.append(body["runId"])
        # Both workers are inside a gate step: what they commit next hits the full disk.
        wait_until(lambda: host.command("stats")["entered"] >= 2, 20, "two gate steps")

        _, hard = resource.prlimit(host.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(host.pid, resource.RLIMIT_FSIZE, (0, hard))
        try:
            status, body = host.request("POST", "/runs", {"workflow": "one"})
            assert status == 503, body
            assert body["error"]["code"] == "unavailable"

            failures_before = host.command("stats")["failures"]
            assert host.command("open") == {"ok": True}
            wait_until(
                lambda: host.command("stats")["failures"] >= failures_before + 3,
                20,
                "the workers to fail to commit (and go on failing)",
            )
            for run_id in started:
                assert _status(host, run_id) == "active"
        finally:
            resource.prlimit(host.pid, resource.RLIMIT_FSIZE, (hard, hard))

        wait_until(
            lambda: all(_status(host, run_id) == "completed" for run_id in started),
            30,
            "the delayed runs to complete once the disk has room",
        )
        status, body = host.request("POST", "/runs", {"workflow": "one"})
        assert status == 201, body
        late = body["runId"]
        wait_until(lambda: _status(host, late) == "completed", 20, "a run started afterwards")
        for run_id in started:
            status, detail = host.request("GET", f"/runs/{run_id}")
            assert [entry["nodeId"] for entry in detail["timeline"]] == ["gate", "a", "b"]
        episode_logs = [line for line in host.stderr if "local scheduler:" in line]
        assert 1 <= len(episode_logs) <= 2, episode_logs
