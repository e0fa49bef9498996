"""The child-runs benchmark (bench/children.py) in its smoke size, as a user runs it.

It runs in a subprocess exactly as documented (``--quick``, one round): each measurement
in a process of its own, every result checked by the benchmark before it is reported. The
test checks that it exits 0 and prints the table with both configurations and the ratio;
timing figures are not asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import children

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("io", [[], ["--io-ms", "5"]], ids=["quick", "awaiting"])
def test_quick_run_checks_its_results_and_prints_the_table(tmp_path: Path, io: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "children.py"), "--quick", "--rounds", "1", *io],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={**os.environ, "REFLUXO_BENCH_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| configuration |"))
    assert "CPU µs/item" in header
    assert "write transactions/item" in header
    assert "deliveries/item" in header
    for config in children.QUICK_CONFIGS:
        row = next(line for line in lines if line.startswith(f"| {config.name} | **"))
        # The map starts one child run per item; the loop is one run.
        runs_per_item = float(row.split("|")[8])
        expected = (config.items + 1) / config.items if config.shape == "map" else 1 / config.items
        assert abs(runs_per_item - expected) < 0.001, row
    assert any(line.startswith("| map 40 / loop 40 (per item) | **") for line in lines)
    assert any(line.startswith("load average") for line in lines)
    assert f"each item waits {io[1] if io else 0} ms" in done.stdout
