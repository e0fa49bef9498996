"""The example app under its former import path, ``examples.app:app``: the app now ships in
the package, as ``refluxo.examples.app:app`` (the command's default)."""

from __future__ import annotations

from refluxo.examples.app import app

__all__ = ["app"]
