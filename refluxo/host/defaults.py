"""The defaults the ``refluxo`` command shows, apart from the settings that validate them.

The command builds its options (and ``--help`` prints them) from these values; defined in
:mod:`refluxo.host.settings`, they would make every command define the settings' frozen
dataclasses, dozens of fields each, the costliest definitions of its start-up. The
settings import them from here: one value each.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_APP = "refluxo.examples.app:app"
"""The App, as ``module:attribute``, used without ``REFLUXO_APP`` (``--app``)."""

DEFAULT_DATABASE = Path(".refluxo") / "refluxo.db"
"""The embedded default's SQLite file (``REFLUXO_DB``): the SQLite backend's default path,
named here too so that reading settings loads no backend (a test pins both)."""

DEFAULT_WORKERS = 16
"""Deliveries in progress at once on the embedded default."""
