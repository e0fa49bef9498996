"""The ``refluxo`` command: serve, run and inspect workflows on the embedded default.

Commands that act on runs work on the local database (``--db``, default
``.refluxo/refluxo.db``) or, with ``--url``, on a running server (local or Cloud Functions).
Every option has an environment variable twin (``REFLUXO_<OPTION>``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import click
except ImportError as missing:  # the engine alone does not install the command's libraries
    raise SystemExit(
        f"the refluxo command needs the 'server' extra ({missing.name} is missing): "
        "pip install 'refluxo[server]'"
    ) from missing

from refluxo import __version__
from refluxo.errors import WorkflowDefinitionError
from refluxo.host.defaults import DEFAULT_WORKERS
from refluxo.host.options import (
    Target,
    app_option,
    db_option,
    load_app,
    parse_json,
    settings_from,
    target_options,
)
from refluxo.runtime.errors import RunError

if TYPE_CHECKING:
    from refluxo.api.client import RunClient

# Every command imports what it uses when it runs: ``--help``, ``--version`` and the quick
# commands start without Flask, the engine or the expression parser (tests/cli pins this).

MAX_GRACE_S = 86_400
"""``refluxo reconcile --grace`` bound: the API's (:mod:`refluxo.api.models`, which loads
pydantic), repeated here so that building the command needs no model (a test pins both)."""
MAX_RECONCILE_LIMIT = 1_000
"""``refluxo reconcile --limit`` bound, as :data:`MAX_GRACE_S`."""


class _Group(click.Group):
    """Turns the errors users cause into clean messages (exit code 1), not tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RunError, WorkflowDefinitionError) as err:
            raise click.ClickException(str(err)) from err
        except Exception as err:
            failure = sys.modules.get("refluxo.api.api_error")  # no ApiError before it is loaded
            if failure is not None and isinstance(err, failure.ApiError):
                raise click.ClickException(str(err)) from err
            raise


@click.group(cls=_Group)
@click.version_option(__version__, package_name="refluxo")  # not read from the metadata: quicker
def main() -> None:
    """Refluxo: durable, step-by-step workflows."""


@main.command()
@app_option
@db_option
@click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="REFLUXO_HOST", show_envvar=True
)
@click.option("--port", default=8080, show_default=True, envvar="REFLUXO_PORT", show_envvar=True)
@click.option(
    "--workers",
    default=DEFAULT_WORKERS,
    show_default=True,
    envvar="REFLUXO_WORKERS",
    show_envvar=True,
    help="Deliveries in progress at once (each waits on its own background thread).",
)
@click.option(
    "--batch",
    default=1,
    show_default=True,
    envvar="REFLUXO_BATCH_STEPS",
    show_envvar=True,
    help="Steps a delivery may run before committing.",
)
@click.option(
    "--api-key",
    envvar="REFLUXO_API_KEY",
    show_envvar=True,
    help="Require this key (X-API-Key) on every route but /healthz and /openapi.json "
    "(required to listen on an address other than loopback).",
)
@click.option(
    "--allowed-hosts",
    envvar="REFLUXO_ALLOWED_HOSTS",
    show_envvar=True,
    help="Further Host names to answer (comma-separated name or name:port; '*' for any), "
    "beyond the address listened on.",
)
def serve(
    app_spec: str,
    db: Path,
    host: str,
    port: int,
    workers: int,
    batch: int,
    api_key: str | None,
    allowed_hosts: str | None,
) -> None:
    """Serve the HTTP API and deliver steps, on the embedded default.

    Without an API key the server answers only its own machine: it refuses to listen on
    an address other than loopback, and answers loopback peers only. It answers only the
    Host names it is reached by (421 otherwise), and requests that change state only as
    application/json (415 otherwise).
    """
    from refluxo.api.server import LocalServer
    from refluxo.host.compose import build_deployment
    from refluxo.host.logs import configure_logging
    from refluxo.host.settings import ConfigurationError

    settings = settings_from(
        REFLUXO_APP=app_spec,
        REFLUXO_DB=str(db),
        REFLUXO_HOST=host,
        REFLUXO_PORT=str(port),
        REFLUXO_WORKERS=str(workers),
        REFLUXO_BATCH_STEPS=str(batch),
        REFLUXO_API_KEY=api_key,
        REFLUXO_ALLOWED_HOSTS=allowed_hosts,
    )
    app = load_app(app_spec)
    try:
        configure_logging(os.environ, cloud=False)  # text, unless REFLUXO_LOG_FORMAT=json
        deployment = build_deployment(settings, app)
    except ConfigurationError as err:
        raise click.ClickException(str(err)) from err
    try:
        server = LocalServer(deployment.api, host, port, access_log=True)
        guarded = "API key required" if settings.api_key else "no API key: this machine only"
        hosts = deployment.api.hosts.describe() if deployment.api.hosts else "any Host"
        click.echo(
            f"refluxo serving {app_spec} on {server.url} (database {db}; {guarded}; "
            f"answering {hosts})"
        )
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        deployment.close()


def follow(
    client: RunClient, run_id: str, *, quiet: bool = False, timeout: float = 3600.0
) -> dict[str, Any]:
    """Print a run's results as they are committed, until it ends or pauses."""
    after = -1
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(run_id, timeline_after=after)
        for entry in view.get("timeline", []):
            after = entry["seq"]
            if quiet:
                continue
            if entry.get("error"):
                click.secho(
                    f"  {entry['nodeId']:<14} attempt {entry['attempt']}: {entry['error']}",
                    fg="red",
                )
            else:
                click.secho(
                    f"  {entry['nodeId']:<14} -> {json.dumps(entry.get('output'))}", fg="green"
                )
        status = view["status"]
        if status in ("completed", "failed", "paused"):
            return view
        if time.monotonic() > deadline:
            raise click.ClickException(f"run {run_id} still {status} after {timeout:.0f} s")
        time.sleep(0.05)


def describe(view: dict[str, Any]) -> str:
    status = view["status"]
    snapshot = view["snapshot"]
    if status == "paused":
        resume_at = snapshot.get("metadata", {}).get("resumeAt")
        when = f" until {resume_at}" if resume_at else "; resume it with `refluxo resume`"
        return f"paused at {view['currentNodeId']!r}{when}"
    if status == "failed":
        reason = snapshot.get("metadata", {}).get("failedReason")
        return "failed" + (f": {reason}" if reason else "")
    return str(status)


@main.command()
@click.argument("workflow")
@click.option(
    "--input",
    "input_json",
    help="The run's input, as JSON.",
    envvar="REFLUXO_INPUT",
    show_envvar=True,
)
@click.option(
    "--run-id",
    help="An id for the run (makes the start idempotent).",
    envvar="REFLUXO_RUN_ID",
    show_envvar=True,
)
@target_options
def run(workflow: str, input_json: str | None, run_id: str | None, target: Target) -> None:
    """Start WORKFLOW and follow it until it ends or pauses."""
    payload = parse_json(input_json, "--input")
    with target.client(deliver=True) as client:
        started = client.start(workflow, payload, run_id)
        click.echo(f"run {started['runId']} of {workflow}")
        view = follow(client, started["runId"])
    click.secho(f"run {view['runId']}: {describe(view)}", bold=True)
    if view["status"] == "failed":
        sys.exit(1)


@main.command()
@click.argument("run_id")
@target_options
def status(run_id: str, target: Target) -> None:
    """Show a run: status, definition version and timeline."""
    with target.reader() as reader:
        view = reader.get(run_id, timeline_limit=1000)
    click.echo(json.dumps(view, indent=2))


@main.command(name="list")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(["active", "paused", "error", "completed", "failed"]),
    envvar="REFLUXO_STATUS",
    show_envvar=True,
)
@click.option("--limit", default=50, show_default=True, envvar="REFLUXO_LIMIT", show_envvar=True)
@target_options
def list_runs(status_filter: str | None, limit: int, target: Target) -> None:
    """List runs, newest first."""
    with target.client(deliver=False) as client:
        page = client.list(status_filter, limit)
    for view in page["runs"]:
        click.echo(
            f"{view['runId']}  {view['workflow']:<20} {view['status']:<10} "
            f"v{view['version']:<5} {view['currentNodeId'] or ''}"
        )


@main.command()
@click.argument("run_id")
@click.option(
    "--payload",
    "payload_json",
    help="The payload for the paused node, as JSON.",
    envvar="REFLUXO_PAYLOAD",
    show_envvar=True,
)
@click.option(
    "--follow/--no-follow",
    "follow_after",
    default=True,
    envvar="REFLUXO_FOLLOW",
    show_envvar=True,
    help="Follow the run until it ends or pauses again.",
)
@target_options
def resume(run_id: str, payload_json: str | None, follow_after: bool, target: Target) -> None:
    """Resume a paused run with a payload."""
    payload = parse_json(payload_json, "--payload")
    with target.client(deliver=follow_after) as client:
        view = client.resume(run_id, payload)
        if follow_after:
            view = follow(client, run_id)
    click.secho(f"run {run_id}: {describe(view)}", bold=True)


@main.command()
@click.argument("run_id")
@click.option(
    "--reason", default="Cancelled", show_default=True, envvar="REFLUXO_REASON", show_envvar=True
)
@target_options
def cancel(run_id: str, reason: str, target: Target) -> None:
    """Cancel a run (it fails with the reason)."""
    with target.client(deliver=False) as client:
        view = client.cancel(run_id, reason)
    click.echo(f"run {run_id}: {describe(view)}")


@main.command()
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(0, MAX_GRACE_S),
    envvar="REFLUXO_RECONCILE_GRACE_S",
    show_envvar=True,
    help="Seconds a run's next step must be overdue to count as stalled (default: 600 "
    "locally; with --url, the server's REFLUXO_RECONCILE_GRACE_S).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_RECONCILE_LIMIT),
    default=500,
    show_default=True,
    envvar="REFLUXO_RECONCILE_LIMIT",
    show_envvar=True,
    help="The most overdue runs examined.",
)
@click.option(
    "--cursor",
    envvar="REFLUXO_RECONCILE_CURSOR",
    show_envvar=True,
    help="Continue where a previous reconcile stopped (the cursor it printed).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="REFLUXO_JSON",
    show_envvar=True,
    help='Print the answer as JSON: {"examined", "rescheduled", "nextCursor"}.',
)
@target_options
def reconcile(
    grace_s: float | None, limit: int, cursor: str | None, as_json: bool, target: Target
) -> None:
    """Schedule again the runs whose next step is overdue (stalled runs).

    Idempotent: a run whose step is merely slow is not run twice. With --url, calls the
    server's POST /tasks/reconcile.
    """
    with target.client(deliver=False) as client:
        report = client.reconcile(grace_s=grace_s, limit=limit, cursor=cursor)
    if as_json:
        click.echo(json.dumps(report))
        return
    examined = report["examined"]
    line = (
        f"{examined} overdue {'run' if examined == 1 else 'runs'} examined, "
        f"{report['rescheduled']} scheduled again"
    )
    if report["nextCursor"]:
        line += f"; more remain: refluxo reconcile --cursor {report['nextCursor']}"
    click.echo(line)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@app_option
@click.option(
    "--no-app",
    is_flag=True,
    envvar="REFLUXO_NO_APP",
    show_envvar=True,
    help="Check the file alone: node types and handles are not checked.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="REFLUXO_JSON",
    show_envvar=True,
    help='Print {"file", "ok", "problems": [{"line", "severity", "message", "node", '
    '"edge", "value", "suggestion"}]} (unknown fields left out).',
)
def validate(file: Path, app_spec: str, no_app: bool, as_json: bool) -> None:
    """Check a workflow file; print each problem with its line (exit code 1 on errors).

    Node types, and the sourceHandle of each edge against the handles its node type
    declares, are checked against the App (--app, default the examples).
    """
    from refluxo.workflow_check import check_workflow_text

    try:
        known = None if no_app else load_app(app_spec).node_types
    except click.BadParameter as err:
        hint = f"{err.message} (--no-app checks the file without node types and handles)"
        raise click.BadParameter(hint, param_hint="--app") from err
    problems = check_workflow_text(file.read_text(encoding="utf-8"), known)
    errors = sum(1 for p in problems if p.severity == "error")
    if as_json:
        report = {"file": str(file), "ok": not errors, "problems": [p.to_json() for p in problems]}
        click.echo(json.dumps(report, indent=2))
    else:
        for problem in problems:
            click.secho(
                problem.render(str(file)),
                fg="red" if problem.severity == "error" else "yellow",
                err=True,
            )
    if errors:
        sys.exit(1)
    if not as_json:
        click.echo(f"{file}: ok" + (f" ({len(problems)} warnings)" if problems else ""))


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--run",
    "run_id",
    help="Highlight the path this run took.",
    envvar="REFLUXO_RUN",
    show_envvar=True,
)
@target_options
def graph(file: Path, run_id: str | None, target: Target) -> None:
    """Print a workflow as a Mermaid flowchart."""
    from refluxo.host.mermaid import to_mermaid
    from refluxo.model import WorkflowDefinition
    from refluxo.runtime.app import load_workflow_file

    raw = load_workflow_file(file)
    workflow = WorkflowDefinition.model_validate({k: v for k, v in raw.items() if k != "start"})
    path: list[str] = []
    if run_id:
        with target.reader() as reader:
            view = reader.get(run_id, timeline_limit=1000)
        path = [entry["nodeId"] for entry in view["timeline"] if not entry.get("error")]
    click.echo(to_mermaid(workflow, path), nl=False)


@main.command()
@app_option
@click.option(
    "--port",
    default=0,
    help="Port of the local server (0: any free port).",
    envvar="REFLUXO_DEMO_PORT",
    show_envvar=True,
)
def demo(app_spec: str, port: int) -> None:
    """Run the example workflows through the local HTTP API, on a fresh database."""
    from refluxo.host.demo import run_demo

    run_demo(load_app(app_spec), port, click.secho)


if __name__ == "__main__":
    main()
