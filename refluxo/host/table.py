"""Plain-text tables for the command's readable output.

Columns are padded to their widest cell and separated by two spaces, under a header line:
readable on a terminal, and still split by ``awk``/``cut`` when piped (no box drawing, no
colour codes in the cells). Machine-readable output is ``--json``, not this.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``header`` and ``rows`` as aligned lines (the last column is not padded)."""
    widths = [len(name) for name in header]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def one_line(text: str, limit: int = 60) -> str:
    """``text`` on one line, cut to ``limit`` characters (marked with an ellipsis)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


__all__ = ["one_line", "table"]
