"""Cloud Functions entry points (functions-framework), thin by design.

* ``api``: the HTTP API (start, list, get, resume, cancel runs).
* ``step``: the step endpoint Cloud Tasks calls (``POST /tasks/step``).
* ``on_message``: a CloudEvent function for Pub/Sub messages that start, resume or cancel
  runs (the message contract is in ``refluxo/api/events.py``).

Settings come from environment variables (``refluxo/host/settings.py``) and are validated when
this module is imported, so a misconfigured deployment fails at start with a message naming
what is missing. With no cloud settings the embedded default (SQLite) is used, so
``functions-framework --target api --source main.py`` runs locally as is.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
from pathlib import Path
from typing import Any

import functions_framework
from cloudevents.http.event import CloudEvent
from flask import Request, Response

from refluxo.host.compose import Deployment, build_deployment, import_app
from refluxo.host.settings import load_settings

logging.basicConfig(level=os.environ.get("REFLUXO_LOG_LEVEL", "INFO"))
logger = logging.getLogger("refluxo.main")

SETTINGS = load_settings(os.environ)
APP = import_app(SETTINGS.app, Path(__file__).resolve().parent)

_deployment: Deployment | None = None
_lock = threading.Lock()


def deployment() -> Deployment:
    """The wired deployment, built on first use (clients are created lazily)."""
    global _deployment
    if _deployment is None:
        with _lock:
            if _deployment is None:
                _deployment = build_deployment(SETTINGS, APP)
    return _deployment


@functions_framework.http
def api(request: Request) -> Response:
    return deployment().api(request)


@functions_framework.http
def step(request: Request) -> Response:
    return deployment().api(request)


@functions_framework.cloud_event
def on_message(event: CloudEvent) -> None:
    """Handle one Pub/Sub message; raises only for transient failures (to be redelivered)."""
    data: Any = event.data if isinstance(event.data, dict) else {}
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    message_id = str(message.get("messageId") or message.get("message_id") or event["id"])
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        attributes = {}
    try:
        payload = base64.b64decode(message.get("data") or b"", validate=True)
    except (binascii.Error, ValueError, TypeError) as err:
        logger.warning(
            "message %s rejected and acknowledged: data is not base64: %s", message_id, err
        )
        return
    result = deployment().on_message(
        payload, {str(k): str(v) for k, v in attributes.items()}, message_id
    )
    logger.info("message %s: %s %s", message_id, result.outcome.value, result.run_id or "")
