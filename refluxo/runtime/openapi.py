"""The published OpenAPI 3.0 document of the HTTP API (served at ``GET /openapi.json``)."""

from __future__ import annotations

import copy
from typing import Any

from refluxo.model import SnapshotStatus

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

MAX_INTEGER = 2**62
"""The largest integer a parameter or body field accepts (below SQLite's 64-bit range)."""

_RUN_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"}
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER}
_STATUS = {"type": "string", "enum": [s.value for s in SnapshotStatus]}

_TIMELINE_ENTRY = {
    "type": "object",
    "required": ["seq", "nodeId", "timestamp", "attempt"],
    "properties": {
        "seq": {"type": "integer"},
        "nodeId": {"type": "string"},
        "output": {},
        "timestamp": {"type": "integer"},
        "attempt": {"type": "integer"},
        "error": {"type": "string"},
    },
}

_RUN = {
    "type": "object",
    "required": [
        "runId",
        "workflow",
        "definitionVersion",
        "status",
        "version",
        "createdAt",
        "updatedAt",
        "resultCount",
        "snapshot",
    ],
    "properties": {
        "runId": {"type": "string"},
        "workflow": {"type": "string"},
        "definitionVersion": {"type": "string", "description": "sha256 of the workflow's JSON"},
        "status": _STATUS,
        "version": {"type": "integer"},
        "currentNodeId": {"type": "string", "nullable": True},
        "createdAt": {"type": "integer", "description": "epoch milliseconds"},
        "updatedAt": {"type": "integer"},
        "resultCount": {"type": "integer"},
        "snapshot": {
            "type": "object",
            "description": "The wire snapshot (camelCase), without its context: read the "
            "results through the timeline.",
        },
        "timeline": {"type": "array", "items": _TIMELINE_ENTRY},
    },
}


def _json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _reply(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "malformed request",
        401: "missing or invalid credentials",
        403: "not allowed",
        404: "unknown run or workflow",
        409: "the run is not in a state for this request",
        413: "body too large",
        503: "the store or scheduler is unavailable; retry",
    }
    return {str(s): _reply(text[s], _ERROR) for s in statuses}


_RUN_PATH_PARAMETER = {"name": "runId", "in": "path", "required": True, "schema": _RUN_ID}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "refluxo",
        "version": "1",
        "description": "Start, follow, resume and cancel durable workflow runs.",
    },
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "oidc": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        },
        "schemas": {"Error": _ERROR, "Run": _RUN},
    },
    "paths": {
        "/healthz": {
            "get": {
                "operationId": "health",
                "responses": {"200": _reply("alive", {"type": "object"})},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "responses": {"200": _reply("this document", {"type": "object"})},
            }
        },
        "/workflows": {
            "get": {
                "operationId": "listWorkflows",
                "security": [{"apiKey": []}],
                "responses": {
                    "200": _reply(
                        "registered workflows",
                        {
                            "type": "object",
                            "required": ["workflows"],
                            "properties": {
                                "workflows": {"type": "array", "items": {"type": "object"}}
                            },
                        },
                    ),
                    **_errors(401, 403),
                },
            }
        },
        "/runs": {
            "post": {
                "operationId": "startRun",
                "security": [{"apiKey": []}],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "required": ["workflow"],
                        "properties": {
                            "workflow": {"type": "string"},
                            "input": {"description": "the first node's external payload"},
                            "runId": {**_RUN_ID, "description": "makes the start idempotent"},
                        },
                    }
                ),
                "responses": {
                    "201": _reply("started", _RUN),
                    "200": _reply("already started with this runId, workflow and input", _RUN),
                    **_errors(400, 401, 403, 404, 409, 413, 503),
                },
            },
            "get": {
                "operationId": "listRuns",
                "security": [{"apiKey": []}],
                "parameters": [
                    {"name": "status", "in": "query", "schema": _STATUS},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _reply(
                        "newest first",
                        {
                            "type": "object",
                            "required": ["runs", "nextCursor"],
                            "properties": {
                                "runs": {"type": "array", "items": _RUN},
                                "nextCursor": {"type": "string", "nullable": True},
                            },
                        },
                    ),
                    **_errors(400, 401, 403, 503),
                },
            },
        },
        "/runs/{runId}": {
            "get": {
                "operationId": "getRun",
                "security": [{"apiKey": []}],
                "parameters": [
                    _RUN_PATH_PARAMETER,
                    {
                        "name": "timelineAfter",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": -1, "maximum": MAX_INTEGER},
                    },
                    {
                        "name": "timelineLimit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": _reply("the run and a page of its timeline", _RUN),
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
        "/runs/{runId}/resume": {
            "post": {
                "operationId": "resumeRun",
                "security": [{"apiKey": []}],
                "parameters": [_RUN_PATH_PARAMETER],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "properties": {
                            "payload": {"description": "the paused node's external payload"},
                            "version": {
                                "type": "integer",
                                "minimum": 0,
                                "description": "resume only if the run is at this version",
                            },
                        },
                    },
                    required=False,
                ),
                "responses": {
                    "202": _reply("resumed; the node runs with the payload", _RUN),
                    **_errors(400, 401, 403, 404, 409, 413, 503),
                },
            }
        },
        "/runs/{runId}/cancel": {
            "post": {
                "operationId": "cancelRun",
                "security": [{"apiKey": []}],
                "parameters": [_RUN_PATH_PARAMETER],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "properties": {"reason": {"type": "string"}},
                    },
                    required=False,
                ),
                "responses": {
                    "200": _reply("cancelled (status failed)", _RUN),
                    **_errors(400, 401, 403, 404, 409, 413, 503),
                },
            }
        },
        "/tasks/step": {
            "post": {
                "operationId": "deliverStep",
                "description": "Internal: the scheduler delivers one step. Only the scheduler's "
                "identity may call it.",
                "security": [{"oidc": []}],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "required": ["runId", "version"],
                        "properties": {
                            "runId": {"type": "string"},
                            "version": _COUNT,
                            "dueAt": _COUNT,
                            "hop": _COUNT,
                        },
                    }
                ),
                "responses": {
                    "200": _reply(
                        "delivered",
                        {
                            "type": "object",
                            "required": ["outcome", "steps"],
                            "properties": {
                                "outcome": {
                                    "type": "string",
                                    "enum": [
                                        "committed",
                                        "stale",
                                        "lost_race",
                                        "not_due",
                                        "idle",
                                        "unknown_run",
                                    ],
                                },
                                "steps": {"type": "integer"},
                            },
                        },
                    ),
                    **_errors(400, 401, 403, 413, 503),
                },
            }
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """A copy of the API's OpenAPI 3.0 document."""
    return copy.deepcopy(_DOCUMENT)
