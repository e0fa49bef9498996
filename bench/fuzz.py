"""HTTP fuzzing at length: schemathesis against the API's published OpenAPI document.

Usage: python bench/fuzz.py [--examples N] [--sequences M] [--scenarios K] [--seed S]
                            [--allow-known]

The same harness and checks as ``tests/fuzz`` (see ``tests/fuzz/conftest.py``), on the real
WSGI app in process, with far more requests:

1. schemathesis' coverage phase for every operation (boundary values, missing and extra
   parts, undocumented methods);
2. ``--examples`` Hypothesis examples per operation and per mode (schema-valid and
   schema-violating), each from the seeded database;
3. ``--sequences`` sequences of 2-6 requests to any operations, sharing one state;
4. the stateful phase: ``--scenarios`` scenarios of schemathesis' state machine, built from
   the document's links (start -> get -> resume -> cancel), each up to ``--steps``
   requests chained on the run ids earlier answers returned.

Every response is checked: no 5xx; status code, content type, headers and body conform to
the document; valid data accepted and invalid data rejected; authentication enforced; every
error ``{"error": {"code", "message"}}`` with a non-empty message; and a rejected request
(any 4xx) changed no row of the database. Prints the requests per operation and per status
code and the total; exits 1 if any response failed a check (each failure is printed with a
curl command that reproduces it; failures whose cause lies outside the HTTP handler and its
document are grouped under their known issue), or if fewer than ``--min-requests``
requests were sent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemathesis import GenerationMode

from tests.fuzz.conftest import (
    KNOWN_ISSUES,
    MODES,
    FuzzTarget,
    can_negate,
    fuzz_operation,
    fuzz_sequences,
    run_coverage_phase,
    run_stateful_phase,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=850, help="per operation and mode")
    parser.add_argument("--sequences", type=int, default=300)
    parser.add_argument("--scenarios", type=int, default=1500, help="stateful scenarios")
    parser.add_argument("--steps", type=int, default=8, help="requests per stateful scenario")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (random)")
    parser.add_argument("--min-requests", type=int, default=20_000)
    parser.add_argument("--show", type=int, default=20, help="failures printed in full")
    parser.add_argument(
        "--allow-known",
        action="store_true",
        help="exit 0 when the only failures are known issues (causes outside the handler)",
    )
    args = parser.parse_args(argv)
    # The dispatcher warns about every delivery for an unknown run: expected here.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    started = time.perf_counter()
    phases: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="refluxo-fuzz-") as directory:
        target = FuzzTarget.build(Path(directory), strict=False, seed=args.seed)
        try:
            run_coverage_phase(target)
            phases["coverage phase"] = target.tally.total()
            for operation in target.operations():
                for mode in MODES:
                    if mode is GenerationMode.NEGATIVE and not can_negate(operation.definition.raw):
                        continue
                    fuzz_operation(
                        target, operation, mode, max_examples=args.examples, seed=args.seed
                    )
            phases["per-operation fuzzing"] = target.tally.total() - sum(phases.values())
            fuzz_sequences(target, max_examples=args.sequences, seed=args.seed)
            phases["sequences"] = target.tally.total() - sum(phases.values())
            run_stateful_phase(
                target, max_examples=args.scenarios, step_count=args.steps, seed=args.seed
            )
            phases["stateful"] = target.tally.total() - sum(phases.values())
        finally:
            target.close()
    elapsed = time.perf_counter() - started
    report(target, phases, elapsed, args.show)

    total = target.tally.total()
    failed = len(target.failures) + (0 if args.allow_known else target.known.total())
    if failed:
        print(f"FAILED: {failed} responses failed a check ({target.known.total()} known issues)")
        return 1
    if total < args.min_requests:
        print(f"FAILED: only {total} requests, fewer than {args.min_requests}")
        return 1
    print("OK: no failure" + (" but the known issues" if target.known else ""))
    return 0


def report(target: FuzzTarget, phases: dict[str, int], elapsed: float, show: int) -> None:
    per_operation: dict[str, Counter[int]] = {}
    for (operation, status), count in target.tally.items():
        per_operation.setdefault(operation, Counter())[status] += count
    per_status: Counter[int] = Counter()
    for statuses in per_operation.values():
        per_status.update(statuses)

    print("requests per operation (and per status code):")
    for operation in sorted(per_operation, key=lambda name: name.split(" ", 1)[::-1]):
        statuses = per_operation[operation]
        detail = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        print(f"  {operation:<34} {statuses.total():>6}   ({detail})")
    print("requests per status code:")
    for status, count in sorted(per_status.items()):
        print(f"  {status}  {count:>6}")
    print("requests per phase:")
    for phase, count in phases.items():
        print(f"  {phase:<22} {count:>6}")
    outcomes = ", ".join(f"{name}: {count}" for name, count in sorted(target.outcomes.items()))
    print(f"/tasks/step outcomes: {outcomes}")
    total = target.tally.total()
    server_errors = sum(count for (_, status), count in target.tally.items() if status >= 500)
    print(f"responses >= 500: {server_errors}")
    print(f"total: {total} requests in {elapsed:.1f} s ({total / elapsed:.0f}/s)")

    if target.known:
        print("known issues (causes outside the HTTP handler and its document):")
        for issue in KNOWN_ISSUES:
            if target.known[issue.name]:
                print(f"  {issue.name}: {target.known[issue.name]} responses")
                print(f"    cause: {issue.cause}")
                example = target.known_examples[issue.name].split("\n", 1)[0]
                print(f"    e.g. {example[:200]}")
    if target.failures:
        distinct: Counter[str] = Counter(
            failure.split("\n", 1)[-1][:160] for failure in target.failures
        )
        print(f"failures: {len(target.failures)} ({len(distinct)} distinct beginnings)")
        for failure in target.failures[:show]:
            print("-" * 78)
            print(failure)


if __name__ == "__main__":
    sys.exit(main())
