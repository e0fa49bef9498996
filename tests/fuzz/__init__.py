"""Schemathesis fuzzing of the HTTP API against its published OpenAPI document."""
