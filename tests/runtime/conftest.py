"""Fixtures for runtime tests: the shared app, a fake clock, the embedded runtime."""

from tests.support.runtime_fixtures import app, db_path, runtime

__all__ = ["app", "db_path", "runtime"]
