"""CPU time of quick ``refluxo`` commands: ``--help``, ``--version`` and ``status``.

Each command runs in a fresh process (as the ``refluxo`` script does: import
``refluxo.host.cli`` and call ``main``); its user+sys CPU time is read from the child's
resource usage (``os.wait4``). With ``--before REV``, the same commands also run on the
code of git revision REV (extracted to a temporary directory; or REV is a directory holding
``refluxo`` and ``examples``), interleaved with the working tree's, round by round and in
alternating order, so both see the same machine.

``status`` reads a run paused on the embedded default (a temporary SQLite database per
tree, prepared with ``refluxo run content-approval``).

Modules load from bytecode caches, as an installed package's do: the children write them
to a temporary directory (``PYTHONPYCACHEPREFIX``) on the untimed first run, whatever
``PYTHONDONTWRITEBYTECODE`` says. With ``--no-bytecode-cache`` no cache is written: the
trees' modules, which have none, compile from source in every run (installed libraries and
the standard library still load their own caches).

    .venv/bin/python bench/cli_startup.py --before HEAD --rounds 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "bench-startup"
ENTRY = "import sys; from refluxo.host.cli import main; sys.argv[0] = 'refluxo'; main()"


def extract(rev: str, into: Path) -> Path:
    """The package and the example app of ``rev``, as files under ``into``."""
    if Path(rev).is_dir():
        return Path(rev).resolve()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "refluxo", "examples"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


BYTECODE: dict[str, str] = {}
"""The children's bytecode settings (see the module's docstring); set by :func:`main`."""


def command(tree: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("REFLUXO_DB", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(BYTECODE)
    return [sys.executable, "-c", ENTRY, *args], env


def cpu_ms(tree: Path, args: list[str]) -> float:
    """User+sys CPU milliseconds of one command run in ``tree``."""
    argv, env = command(tree, args)
    child = subprocess.Popen(
        argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{argv[3:]} failed in {tree} (exit {child.returncode})")
    return (usage.ru_utime + usage.ru_stime) * 1000


def check(tree: Path, args: list[str], expected: str) -> None:
    """Run once, untimed (this also writes the bytecode caches), and check the output."""
    argv, env = command(tree, args)
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0 or expected not in done.stdout:
        raise SystemExit(f"{args} in {tree}: exit {done.returncode}\n{done.stdout}{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV", help="also measure git revision REV")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="write no bytecode cache: the trees' modules compile in every run",
    )
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if options.no_bytecode_cache:
            BYTECODE["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            BYTECODE["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        trees = {"after": ROOT}
        if options.before:
            trees = {"before": extract(options.before, Path(tmp)), **trees}
        commands: dict[str, dict[str, list[str]]] = {}
        for name, tree in trees.items():
            db = str(Path(tmp) / f"{name}.db")
            check(tree, ["run", "content-approval", "--run-id", RUN_ID, "--db", db], "paused")
            commands[name] = {
                "--help": ["--help"],
                "--version": ["--version"],
                "status": ["status", RUN_ID, "--db", db],
            }
            check(tree, ["--help"], "Usage")
            check(tree, ["--version"], "version")
            check(tree, ["status", RUN_ID, "--db", db], "paused")

        samples: dict[tuple[str, str], list[float]] = {}
        names = list(trees)
        for round_ in range(options.rounds):
            order = names if round_ % 2 == 0 else names[::-1]
            for label in ("--help", "--version", "status"):
                for name in order:
                    ms = cpu_ms(trees[name], commands[name][label])
                    samples.setdefault((label, name), []).append(ms)

    cache = "compiled in every run" if options.no_bytecode_cache else "loaded from bytecode"
    print(f"{options.rounds} rounds, the trees' modules {cache}; CPU ms (user+sys) per")
    print("command, median [min-max]")
    print()
    print("| command | " + " | ".join(names) + (" | ratio |" if len(names) > 1 else " |"))
    print("|---|" + "---:|" * len(names) + ("---:|" if len(names) > 1 else ""))
    for label in ("--help", "--version", "status"):
        cells = []
        medians = []
        for name in names:
            values = samples[(label, name)]
            medians.append(statistics.median(values))
            cells.append(f"{medians[-1]:.0f} [{min(values):.0f}-{max(values):.0f}]")
        ratio = f" | {medians[0] / medians[-1]:.1f}x |" if len(names) > 1 else " |"
        print(f"| `refluxo {label}` | " + " | ".join(cells) + ratio)


if __name__ == "__main__":
    main()
