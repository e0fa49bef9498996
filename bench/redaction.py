"""Redaction benchmark: what masking every form of every secret costs, per text size.

Usage:
    python bench/redaction.py [--rounds N] [--mib M]

For 20 and 200 secrets (12 characters each, as API keys are) and two texts of ``--mib``
MiB each (JSON of ordinary records, where nothing matches; random base64, where every
character could start an encoded secret), it times :meth:`refluxo.redaction.Redactor.mask_text`
beside a baseline doing the least any masking must do: one ``str.replace`` of each secret
as written. Rounds are interleaved (baseline, redactor, baseline, redactor...) and the
median of each is reported, with the ratio. Also reported: building the redactor (once per
set of secrets) and masking a JSON output holding 100,000 numbers of which every one holds
a secret (the case that searched every form again per number).
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from refluxo.redaction import MASK, Redactor  # noqa: E402


def _secrets(count: int, rng: random.Random) -> list[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return ["".join(rng.choice(alphabet) for _ in range(12)) for _ in range(count)]


def _texts(mib: float, rng: random.Random) -> dict[str, str]:
    size = int(mib * 1024 * 1024)
    records: list[dict[str, object]] = []
    length = 0
    while length < size:
        record = {"id": len(records), "name": f"customer {len(records)}", "note": "lorem ipsum"}
        records.append(record)
        length += len(json.dumps(record)) + 2
    raw = rng.randbytes(size * 3 // 4)
    return {"json records": json.dumps(records), "random base64": base64.b64encode(raw).decode()}


def _baseline(secrets: list[str]) -> Callable[[str], str]:
    def mask(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text

    return mask


def _seconds(run: Callable[[str], object], text: str) -> float:
    started = time.perf_counter()
    run(text)
    return time.perf_counter() - started


def _mask_json_text(redactor: Redactor, text: str) -> object:
    return redactor.mask_json(json.loads(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=float, default=1.0)
    options = parser.parse_args()
    rng = random.Random(7)
    texts = _texts(options.mib, rng)
    print(f"| secrets | text ({options.mib:g} MiB) | baseline (replace) | redactor | ratio |")
    print("|---|---|---|---|---|")
    for count in (20, 200):
        secrets = _secrets(count, rng)
        started = time.perf_counter()
        redactor = Redactor(secrets)
        built = time.perf_counter() - started
        baseline = _baseline(secrets)
        for name, text in texts.items():
            base: list[float] = []
            full: list[float] = []
            for _ in range(options.rounds):  # interleaved
                base.append(_seconds(baseline, text))
                full.append(_seconds(redactor.mask_text, text))
            b, f = statistics.median(base), statistics.median(full)
            print(f"| {count} | {name} | {b * 1000:.1f} ms | {f * 1000:.1f} ms | {f / b:.0f}x |")
        numbers = json.dumps({"ids": [1234] * 100_000})
        numbered = Redactor([*secrets, "1234"])
        mask_numbers = functools.partial(_mask_json_text, numbered)
        spent = statistics.median(_seconds(mask_numbers, numbers) for _ in range(options.rounds))
        print(
            f"| {count} | (built once: {built * 1000:.0f} ms; 100,000 numbers each holding "
            f"a secret, mask_json: {spent * 1000:.0f} ms) | | | |"
        )


if __name__ == "__main__":
    main()
