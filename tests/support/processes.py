"""Stopping the servers tests start as their own processes."""

from __future__ import annotations

import subprocess
from typing import Any

STOP_TIMEOUT_S = 15.0


def stopped(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> str:
    """Stop ``process`` as a service manager does (SIGTERM) and return the rest of its
    output (its pipes read to the end and closed).

    One that has not ended ``timeout`` seconds later is killed and fails the test with its
    output: left running, it would hold its pipes open into the tests that follow.
    """
    process.terminate()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(
            f"the process did not stop within {timeout:g} s of SIGTERM; it printed:\n"
            f"{_text(output)[-4000:]}"
        ) from None
    return _text(output)


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
