"""Tests of the embedded SQLite backend: pool, failures, scheduler."""
