"""Runnable example workflows (see app.py)."""
