"""Helpers shared by the test packages (imported, never collected)."""
