"""Peer benchmark: the embedded default against DBOS Transact, the same workloads side by side.

Usage: python bench/peer.py [--rounds N] [--quick] [--no-dbos]

Three workloads of quick steps (each returns a small dict, ``{"i": k}``), on both sides:
8 concurrent chains of 250 steps, 1 chain of 2,000 steps, and 200 runs of 5 steps (the
starts are timed too). Three sides measure each workload:

* **refluxo batch 1** and **refluxo batch 10**: ``EmbeddedRuntime`` (SQLite, its default
  worker count) with ``StepBudget(max_steps=1)`` (one step per delivery, every step its own
  commit) and ``StepBudget(max_steps=10)``. Runs are started through the runtime's service
  (``RunService.start``, in process, no HTTP), and every step is delivered by the local
  scheduler; the workflow is ``bench.workloads.chain_app`` and completion is polled with
  ``bench.runtime.wait_completed``;
* **DBOS**: ``bench/peer_dbos.py`` in its own virtual environment ``.venv-dbos`` (created
  here on first use with a pinned ``dbos`` from PyPI): a workflow of ``@DBOS.step()``
  functions on a SQLite system database, started with ``DBOS.start_workflow`` and awaited
  with ``get_result()``; DBOS's defaults otherwise.

Each measurement runs in a fresh process with a fresh temporary directory, so no side
inherits another's state, caches or threads. Building the runtime (or launching DBOS) is
not timed: the clock starts before the first start and stops when every run has completed.
Each side also reports its process's CPU time over that span, per step (background threads
included; less disturbed than wall time by other work on a shared machine). Each side checks
its result before answering (every run completed, the number of steps recorded). Rounds
interleave: in each round, every workload is measured by the three sides one after the
other, the order reversed every other round; a ratio refluxo / DBOS is taken within a round.

``--quick`` runs tiny workloads (a smoke test); ``--no-dbos`` measures refluxo only (no
``.venv-dbos`` needed).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runtime import wait_completed
from bench.workloads import chain_app
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.host.settings import DEFAULT_WORKERS
from refluxo.runtime import StepBudget

ROOT = Path(__file__).resolve().parent.parent

DBOS_VERSION = "3.4.0"
"""The DBOS Transact release measured (pinned so that figures can be reproduced)."""

DBOS_VENV = ROOT / ".venv-dbos"
DBOS_STAMP = DBOS_VENV / ".installed"


@dataclass(frozen=True)
class Workload:
    name: str
    runs: int
    length: int


WORKLOADS = (
    Workload("8 chains x 250", 8, 250),
    Workload("1 chain x 2,000", 1, 2000),
    Workload("200 runs x 5", 200, 5),
)
QUICK_WORKLOADS = (
    Workload("2 chains x 20", 2, 20),
    Workload("1 chain x 50", 1, 50),
    Workload("10 runs x 5", 10, 5),
)

REFLUXO_SIDES = {"refluxo batch 1": 1, "refluxo batch 10": 10}
DBOS_SIDE = "DBOS"


def measure_refluxo(directory: Path, runs: int, length: int, batch: int) -> dict[str, Any]:
    """Start ``runs`` chains of ``length`` quick nodes through the service; time until all
    complete; check every run and every step."""
    path = directory / "refluxo.db"
    runtime = EmbeddedRuntime(chain_app(length), path, budget=StepBudget(max_steps=batch))
    runtime.start()
    try:
        started = time.perf_counter()
        cpu = time.process_time()
        for k in range(runs):
            runtime.service.start("chain", {"k": k})
        wait_completed(path, runs)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        runtime.stop()
    connection = sqlite3.connect(path)
    try:
        completed, recorded = connection.execute(
            "SELECT count(*), sum(result_count) FROM runs WHERE status = 'completed'"
        ).fetchone()
        rows = connection.execute("SELECT count(*) FROM results").fetchone()[0]
        total = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        connection.close()
    steps = runs * length
    assert (completed, total) == (runs, runs), (completed, total, runs)
    assert recorded == rows == steps, (recorded, rows, steps)
    return {
        "side": f"refluxo batch {batch}",
        "workers": DEFAULT_WORKERS,
        "runs": runs,
        "length": length,
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
        "cpu_us_per_step": cpu / steps * 1e6,
    }


def ensure_dbos() -> Path:
    """The interpreter of ``.venv-dbos``, created (``python3 -m venv`` + pip) if missing."""
    python = DBOS_VENV / "bin" / "python"
    if DBOS_STAMP.is_file() and DBOS_STAMP.read_text().strip() == DBOS_VERSION:
        return python
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(DBOS_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            f"dbos=={DBOS_VERSION}",
        ],
        check=True,
    )
    DBOS_STAMP.write_text(DBOS_VERSION + "\n")
    return python


def run_child(command: list[str]) -> dict[str, Any]:
    """Run one measurement in its own process; its last line of output is the JSON row."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def measure(side: str, workload: Workload, dbos_python: Path | None) -> dict[str, Any]:
    """One side, one workload, in a fresh process and a fresh temporary directory."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("REFLUXO_BENCH_DIR")) as scratch:
        sizes = [str(workload.runs), str(workload.length)]
        if side == DBOS_SIDE:
            assert dbos_python is not None
            script = str(ROOT / "bench" / "peer_dbos.py")
            return run_child([str(dbos_python), script, *sizes, scratch])
        batch = str(REFLUXO_SIDES[side])
        return run_child([sys.executable, __file__, "--child", *sizes, batch, scratch])


def cell(values: list[float], digits: int = 0) -> str:
    """A median, bold, followed by every round's value."""
    each = ", ".join(f"{value:.{digits}f}" for value in values)
    return f"**{statistics.median(values):.{digits}f}** ({each})"


def table(measured: dict[str, dict[str, list[dict[str, Any]]]], sides: list[str]) -> str:
    """Markdown: steps/s and CPU µs/step per side; per round, the ratios of steps/s
    (refluxo / DBOS) and of CPU time per step (DBOS / refluxo: how many times the CPU time
    refluxo spends on a step DBOS spends on it)."""
    lines = []
    header = ["workload", "steps"] + [f"{side}: steps/s" for side in sides]
    if DBOS_SIDE in sides:
        header += [f"{side} / DBOS" for side in REFLUXO_SIDES]
    header += [f"{side}: CPU µs/step" for side in sides]
    if DBOS_SIDE in sides:
        header += [f"CPU per step, DBOS / {side}" for side in REFLUXO_SIDES]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|" + "---:|" * (len(header) - 1))
    for name, by_side in measured.items():
        row = [name, str(by_side[sides[0]][0]["steps"])]
        row += [cell([r["steps_per_s"] for r in by_side[side]]) for side in sides]
        if DBOS_SIDE in sides:
            dbos = by_side[DBOS_SIDE]
            for side in REFLUXO_SIDES:
                ratios = [
                    r["steps_per_s"] / d["steps_per_s"]
                    for r, d in zip(by_side[side], dbos, strict=True)
                ]
                row.append(cell(ratios, 2) + "x")
        row += [
            f"{statistics.median(r['cpu_us_per_step'] for r in by_side[side]):.0f}"
            for side in sides
        ]
        if DBOS_SIDE in sides:
            for side in REFLUXO_SIDES:
                ratios = [
                    d["cpu_us_per_step"] / r["cpu_us_per_step"]
                    for r, d in zip(by_side[side], by_side[DBOS_SIDE], strict=True)
                ]
                row.append(cell(ratios, 2) + "x")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        runs, length, batch = (int(value) for value in sys.argv[2:5])
        print(json.dumps(measure_refluxo(Path(sys.argv[5]), runs, length, batch)), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny workloads (a smoke test)")
    parser.add_argument("--no-dbos", action="store_true", help="measure refluxo only")
    options = parser.parse_args()
    dbos_python = None if options.no_dbos else ensure_dbos()
    sides = list(REFLUXO_SIDES) + ([] if options.no_dbos else [DBOS_SIDE])
    workloads = QUICK_WORKLOADS if options.quick else WORKLOADS
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {
        workload.name: {side: [] for side in sides} for workload in workloads
    }
    loads: list[float] = []
    for index in range(options.rounds):
        loads.append(os.getloadavg()[0])
        for workload in workloads:
            for side in sides if index % 2 == 0 else reversed(sides):
                row = measure(side, workload, dbos_python)
                row.update(round=index, workload=workload.name)
                measured[workload.name][side].append(row)
                print(json.dumps(row), flush=True)
    print(
        f"\n{options.rounds} rounds; refluxo: EmbeddedRuntime, {DEFAULT_WORKERS} workers; "
        + ("" if options.no_dbos else f"DBOS Transact {DBOS_VERSION}, SQLite; ")
        + "medians in bold, then each round\n"
    )
    print(table(measured, sides))
    print(
        "\nload average (1 min) at the start of each round: " + ", ".join(f"{x:.1f}" for x in loads)
    )


if __name__ == "__main__":
    main()
