"""``refluxo demo``: the example workflows, end to end, through the local HTTP API.

Starts the embedded default (a fresh SQLite file in a temporary directory) and the local
HTTP server on 127.0.0.1, then drives runs the way a client would: ``POST /runs``, follow
``GET /runs/{id}``, ``POST /runs/{id}/resume``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refluxo.api.client import HttpClient
from refluxo.api.server import LocalServer
from refluxo.host.compose import build_deployment
from refluxo.host.settings import EmbeddedSettings
from refluxo.runtime.app import App

Show = Callable[..., None]


_ENDS = ("paused", "completed", "failed")


def _follow(client: HttpClient, run_id: str, show: Show, after: int = -1) -> dict[str, Any]:
    """Print each new timeline entry until the run pauses or ends; returns its view."""
    deadline = time.monotonic() + 60
    while True:
        view = client.get(run_id, timeline_after=after)
        for entry in view["timeline"]:
            after = entry["seq"]
            if entry.get("error"):
                show(
                    f"    {entry['nodeId']:<12} attempt {entry['attempt']} failed: "
                    f"{entry['error']}",
                    fg="red",
                )
            else:
                show(f"    {entry['nodeId']:<12} {json.dumps(entry.get('output'))}", fg="green")
        if view["status"] in _ENDS:
            return view
        if view["status"] == "error":
            retry = view["snapshot"].get("retryState", {})
            show(
                f"    ... retry {retry.get('attempts')} of {view['currentNodeId']!r} scheduled "
                f"at {retry.get('nextRetryAt')}",
                fg="yellow",
            )
            after_retry = view["version"]
            while client.get(run_id, timeline_limit=0)["version"] == after_retry:
                time.sleep(0.05)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not finish in time")
        time.sleep(0.05)


def run_demo(app: App, port: int, show: Show) -> dict[str, Any]:
    """Run the examples and return the approval run's final view."""
    with tempfile.TemporaryDirectory() as scratch:
        settings = EmbeddedSettings(
            app="(given)", database=Path(scratch) / "demo.db", workers=2, api_key=None
        )
        deployment = build_deployment(settings, app)
        server = LocalServer(deployment.api, "127.0.0.1", port).start()
        try:
            client = HttpClient(server.url)
            show(
                f"refluxo demo: embedded default (SQLite in {scratch}), API on {server.url}",
                bold=True,
            )

            show("\n1. content-approval: a human approves in the middle", bold=True)
            show('   POST /runs {"workflow": "content-approval", "input": {"title": "Hello"}}')
            run = client.start("content-approval", {"title": "Hello, refluxo"})
            view = _follow(client, run["runId"], show)
            show(
                f"   paused at {view['currentNodeId']!r}; POST /runs/{run['runId'][:8]}.../resume",
                fg="yellow",
            )
            client.resume(run["runId"], {"approved": True, "by": "grace@example.com"})
            approval = _follow(client, run["runId"], show, view["resultCount"] - 1)
            show(f"   {approval['status']} at version {approval['version']}", bold=True)

            show("\n2. flaky-retry: a payment gateway fails twice; retried with backoff", bold=True)
            run = client.start("flaky-retry", {"failures": 2})
            view = _follow(client, run["runId"], show)
            show(f"   {view['status']}", bold=True)

            show("\n3. api-aggregation: expressions combine three API results", bold=True)
            run = client.start("api-aggregation")
            view = _follow(client, run["runId"], show)
            show(f"   {view['status']}", bold=True)

            show("\nThe approval run, as GET /runs/{id}?timelineLimit=0 returns it:", bold=True)
            show(json.dumps(client.get(approval["runId"], timeline_limit=0), indent=2))
            return approval
        finally:
            server.stop()
            deployment.close()
