"""Which App a command uses, named once for a project instead of on every command.

A user's project says it in its ``pyproject.toml``::

    [tool.refluxo]
    app = "orders.app:app"

and every ``refluxo`` command run in that directory (or below it) uses that App, imported
from the directory holding the file. ``--app`` and ``REFLUXO_APP`` still win (in that
order); without any of them, the bundled examples are used (:data:`DEFAULT_APP`).

Only the commands that load the App read the file (``tomllib`` is imported then), so
``refluxo status`` and ``--help`` stay quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from refluxo.host.defaults import DEFAULT_APP

PYPROJECT = "pyproject.toml"


class AppChoice(NamedTuple):
    """The App's ``module:attribute`` and the directory its module is imported from."""

    spec: str
    root: Path
    source: str
    """Where the choice came from, for messages: ``--app``, a pyproject path, or default."""


class ProjectError(ValueError):
    """A ``pyproject.toml`` names the App wrongly; the message says where and how."""


def project_app(start: Path) -> AppChoice | None:
    """The App ``[tool.refluxo] app`` names in the nearest ``pyproject.toml`` holding it.

    Looks in ``start`` and then each parent; a ``pyproject.toml`` without a
    ``[tool.refluxo]`` table is passed over (a parent may be the project).

    Raises:
        ProjectError: the file is not TOML, or ``app`` is not ``module:attribute``.
    """
    for directory in (start, *start.parents):
        candidate = directory / PYPROJECT
        if not candidate.is_file():
            continue
        import tomllib

        try:
            document = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ProjectError(f"{candidate}: not valid TOML: {err}") from err
        table = document.get("tool", {}).get("refluxo")
        if not isinstance(table, dict) or "app" not in table:
            continue
        spec = table["app"]
        if not isinstance(spec, str) or ":" not in spec:
            raise ProjectError(
                f'{candidate}: [tool.refluxo] app must be "module:attribute", got {spec!r}'
            )
        return AppChoice(spec, directory, str(candidate))
    return None


def choose_app(given: str | None, cwd: Path) -> AppChoice:
    """``given`` (``--app`` or ``REFLUXO_APP``) if set, else the project's, else the default."""
    if given:
        return AppChoice(given, cwd, "--app")
    return project_app(cwd) or AppChoice(DEFAULT_APP, cwd, "default")


__all__ = ["PYPROJECT", "AppChoice", "ProjectError", "choose_app", "project_app"]
