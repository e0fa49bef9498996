"""Runnable example workflows, shipped in the package (see app.py: ``refluxo.examples.app:app``)."""
