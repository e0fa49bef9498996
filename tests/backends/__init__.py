"""Tests of the storage and scheduling backends."""
