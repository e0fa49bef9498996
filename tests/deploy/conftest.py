"""Fixtures for deployment tests: the embedded runtime's."""

from tests.support.runtime_fixtures import app, db_path, runtime

__all__ = ["app", "db_path", "runtime"]
