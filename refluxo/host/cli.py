"""The ``refluxo`` command: serve, run and inspect workflows on the embedded default.

Commands that act on runs work on the local database (``--db``, default
``.refluxo/refluxo.db``) or, with ``--url``, on a running server (local or Cloud Functions).
Every option has an environment variable twin (``REFLUXO_<OPTION>``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
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
from refluxo.errors import TransientError, WorkflowDefinitionError
from refluxo.host.defaults import DEFAULT_WORKERS
from refluxo.host.options import (
    FiniteRange,
    Target,
    app_option,
    app_spec_of,
    db_option,
    load_app,
    parse_json,
    settings_from,
    target_options,
)
from refluxo.runtime.errors import RunError

if TYPE_CHECKING:
    from refluxo.api.client import RunClient
    from refluxo.api.server import LocalServer

# Every command imports what it uses when it runs: ``--help``, ``--version`` and the quick
# commands start without Flask, the engine or the expression parser (tests/cli pins this).

MAX_GRACE_S = 86_400
"""``refluxo reconcile --grace`` bound: the API's (:mod:`refluxo.api.models`, which loads
pydantic), repeated here so that building the command needs no model (a test pins both)."""
MAX_RECONCILE_LIMIT = 1_000
"""``refluxo reconcile --limit`` bound, as :data:`MAX_GRACE_S`."""

EXIT_RUN_FAILED = 1
"""The exit code of a command whose run failed, as of any error it reports (2: usage)."""


class _Interrupted(click.ClickException):
    """Ctrl-C or SIGTERM: one line, and the exit code of an interrupted command."""

    exit_code = 130


class _Group(click.Group):
    """Turns the errors users cause into clean messages (exit code 1), not tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        # SIGTERM (kill, a service manager) as Ctrl-C: a step this process delivers finishes
        # and commits before it exits, instead of running again later. (Only the main
        # thread may set a handler: a command invoked from another thread keeps the default.)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted(
                "interrupted (steps in progress were let finish): a run left active goes on "
                "when a process delivers its steps (refluxo serve, or refluxo run)"
            ) from None
        except (RunError, WorkflowDefinitionError) as err:
            raise click.ClickException(str(err)) from err
        except Exception as err:
            failure = sys.modules.get("refluxo.api.api_error")  # no ApiError before it is loaded
            if failure is not None and isinstance(
                err, failure.ApiError | failure.ServerUnreachable
            ):
                raise click.ClickException(str(err)) from err
            local = sys.modules.get("refluxo.backends.sqlite.errors")
            if local is not None and isinstance(err, local.LocalDatabaseError):
                raise click.ClickException(str(err)) from err
            if isinstance(err, TransientError):  # the store's words: it may pass, or not
                raise click.ClickException(f"{err} (try again; if it lasts, check --db)") from err
            sqlite = sys.modules.get("sqlite3")
            if sqlite is not None and isinstance(err, sqlite.DatabaseError):
                # Found past opening: a damaged page, read when a command reaches it.
                raise click.ClickException(
                    f"the local database cannot be read ({err}): restore it from a backup, "
                    "or move it away to start afresh"
                ) from err
            raise


@click.group(cls=_Group)
@click.version_option(__version__, package_name="refluxo")  # not read from the metadata: quicker
def main() -> None:
    """Refluxo: durable, step-by-step workflows.

    \b
    The App is --app (REFLUXO_APP), else [tool.refluxo] app in the nearest
    pyproject.toml, else the bundled examples. Runs are on the local database
    (--db), or on a server with --url.

    \b
    Exit codes: 0 done (a run completed, paused or waiting on a timer);
    1 the run failed, or the command could not do it (unknown run, conflict,
    server error); 2 a usage error (a missing or malformed option).
    """


@main.command()
@app_option
@db_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="REFLUXO_HOST",
    show_envvar=True,
    help="Address to listen on (beyond loopback: only with --api-key).",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="REFLUXO_PORT",
    show_envvar=True,
    help="Port to listen on (0: any free port; the banner prints it).",
)
@click.option(
    "--workers",
    default=DEFAULT_WORKERS,
    show_default=True,
    type=click.IntRange(1, 256),  # with none, serve would take runs and never run them
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
    app_spec: str | None,
    db: Path,
    host: str,
    port: int,
    workers: int,
    batch: int,
    api_key: str | None,
    allowed_hosts: str | None,
) -> None:
    """Serve the HTTP API, the run inspector (/ui) and deliver steps, on the local database.

    Logs one line per step, failed attempt (with the next attempt's time), pause (with
    its timer's time) and failed run, each with the run id and node (text; JSON with
    REFLUXO_LOG_FORMAT=json; REFLUXO_LOG_LEVEL=WARNING keeps only the failures).

    Without an API key the server answers only its own machine: it refuses to listen on
    an address other than loopback, and answers loopback peers only. It answers only the
    Host names it is reached by (421 otherwise), and requests that change state only as
    application/json (415 otherwise).
    """
    from refluxo.api.server import CannotListen, LocalServer
    from refluxo.host.compose import build_deployment
    from refluxo.host.logs import configure_logging
    from refluxo.host.serve_log import DueTimes, service_due_times
    from refluxo.host.settings import ConfigurationError

    spec = app_spec_of(app_spec)
    settings = settings_from(
        REFLUXO_APP=spec,
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
        handler = configure_logging(os.environ, cloud=False)  # text, or REFLUXO_LOG_FORMAT
        deployment = build_deployment(settings, app)
        handler.addFilter(DueTimes(service_due_times(deployment.service)))
    except ConfigurationError as err:
        raise click.ClickException(str(err)) from err
    try:
        server = LocalServer(deployment.api, host, port, access_log=True)
        # Before the banner: whoever reads it may stop the server at once.
        _stop_on_signals(server)
        deployment.announce(f"serve on {server.url}")
        guarded = "API key required" if settings.api_key else "no API key: this machine only"
        hosts = deployment.api.hosts.describe() if deployment.api.hosts else "any Host"
        click.echo(
            f"refluxo serving {spec} on {server.url} (database {db}; {guarded}; answering {hosts})"
        )
        click.echo(f"inspector: {server.url}/ui", nl=True)
        sys.stdout.flush()
        server.serve_forever()
        logging.getLogger("refluxo.server").info(
            "stopping: the steps in progress finish first (interrupt again to stop at once)"
        )
    except CannotListen as err:
        raise click.ClickException(str(err)) from None
    except KeyboardInterrupt:
        pass
    finally:
        deployment.close()


def _stop_on_signals(server: LocalServer) -> None:
    """SIGTERM (a service manager's stop, ``kill``) and SIGINT (Ctrl-C) stop serving; the
    steps in progress then finish and commit before the process ends, rather than run again
    later. A second signal interrupts at once.

    The first signal only asks the accept loop to end: an exception raised by the handler
    lands wherever the main thread is, and one landing in a connection's handover to its
    thread was lost there (the server went on serving after SIGTERM).
    """

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        server.stop_soon()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="REFLUXO_JSON",
    show_envvar=True,
    help="Print the API's JSON view instead of text.",
)
wait_option = click.option(
    "--wait",
    "wait_s",
    type=FiniteRange(0),
    default=60.0,
    show_default=True,
    envvar="REFLUXO_WAIT",
    show_envvar=True,
    help="Keep following a run whose retry or timer is due within this many seconds; "
    "a longer wait is left to the scheduler (refluxo serve, or the deployed runtime).",
)


def exit_for(view: dict[str, Any]) -> None:
    """Exit with 1 when the run failed (every command that shows one run)."""
    if view["status"] == "failed":
        sys.exit(EXIT_RUN_FAILED)


def _follow(
    client: RunClient, run_id: str, wait_s: float, as_json: bool, after: int = -1
) -> dict[str, Any]:
    from refluxo.host.follow import StillRunning, follow

    def echo(line: str) -> None:
        if not as_json:
            click.echo(line)

    try:
        return follow(client, run_id, echo=echo, after=after, wait_s=wait_s)
    except StillRunning as err:
        raise click.ClickException(f"{err}; follow it with: refluxo status {run_id}") from err


def _report(view: dict[str, Any], target: Target, as_json: bool) -> None:
    """How ``run`` and ``resume`` end: the run's state and what moves it on."""
    from refluxo.host.run_text import describe, what_next

    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        colour = {"failed": "red", "completed": "green"}.get(view["status"], "yellow")
        click.secho(f"run {view['runId']}: {describe(view)}", fg=colour, bold=True)
        for line in what_next(view, server=bool(target.url)):
            click.echo(line)
    exit_for(view)


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
@wait_option
@json_option
@target_options
def run(
    workflow: str,
    input_json: str | None,
    run_id: str | None,
    wait_s: float,
    as_json: bool,
    target: Target,
) -> None:
    """Start WORKFLOW and follow it until it ends or pauses.

    Prints the run id, each result as it is committed, and how the run stands: for a
    pause, the ready-to-paste `refluxo resume` line; for a timer or retry due later than
    --wait, its time and what must be running to fire it. Exit code 1 if the run failed.
    """
    payload = parse_json(input_json, "--input")
    with target.client(deliver=True) as client:
        started = client.start(workflow, payload, run_id)
        if not as_json:
            click.echo(f"run {started['runId']} of {workflow}")
        view = _follow(client, started["runId"], wait_s, as_json)
    _report(view, target, as_json)


@main.command()
@click.argument("run_id")
@json_option
@target_options
def status(run_id: str, as_json: bool, target: Target) -> None:
    """Show a run: its state, what moves it on, and its timeline.

    Exit code 1 if the run failed.
    """
    with target.reader() as reader:
        view = reader.get(run_id, timeline_limit=1000)
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        from refluxo.host.run_text import status_text

        click.echo(status_text(view, server=bool(target.url)))
    exit_for(view)


MAX_LIST = 200
"""The most runs ``refluxo list`` asks for at once (the API's page limit)."""


@main.command(name="list")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(["active", "paused", "error", "completed", "failed"]),
    envvar="REFLUXO_STATUS",
    show_envvar=True,
    help="Only runs in this state (error: waiting for a retry).",
)
@click.option(
    "--workflow",
    "workflow_filter",
    envvar="REFLUXO_WORKFLOW",
    show_envvar=True,
    help=f"Only runs of this workflow (among the newest {MAX_LIST}).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST),
    default=50,
    show_default=True,
    envvar="REFLUXO_LIMIT",
    show_envvar=True,
    help="The most runs shown.",
)
@json_option
@target_options
def list_runs(
    status_filter: str | None,
    workflow_filter: str | None,
    limit: int,
    as_json: bool,
    target: Target,
) -> None:
    """List runs, newest first."""
    with target.client(deliver=False) as client:
        page = client.list(status_filter, MAX_LIST if workflow_filter else limit)
    runs = [r for r in page["runs"] if workflow_filter in (None, r["workflow"])][:limit]
    if as_json:
        click.echo(json.dumps({**page, "runs": runs}, indent=2))
        return
    from refluxo.host.run_text import runs_table

    if runs:
        click.echo(runs_table(runs))
    else:
        click.echo(
            "no runs" + (" matching the filters" if status_filter or workflow_filter else "")
        )


@main.command()
@click.argument("run_id")
@click.option(
    "--payload",
    "payload_json",
    help="What the paused node receives, as JSON (required; null sends none).",
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
@wait_option
@json_option
@target_options
def resume(
    run_id: str,
    payload_json: str | None,
    follow_after: bool,
    wait_s: float,
    as_json: bool,
    target: Target,
) -> None:
    """Resume a paused run with a payload, and follow it.

    Exit code 1 if the run fails (or was not paused).
    """
    if payload_json is None:
        raise click.UsageError(
            "--payload is required: it is what the paused node receives "
            f"(refluxo resume {run_id} --payload '{{\"approved\": true}}'; "
            "--payload null sends none)"
        )
    payload = parse_json(payload_json, "--payload")
    with target.client(deliver=follow_after) as client:
        before = client.get(run_id, timeline_limit=0)
        view = client.resume(run_id, payload)
        if follow_after:
            view = _follow(client, run_id, wait_s, as_json, before["resultCount"] - 1)
    if (
        not as_json
        and view["status"] == "paused"
        and view.get("currentNodeId") == before.get("currentNodeId")
        and view.get("resultCount") == before.get("resultCount")
    ):
        click.echo(f"{view['currentNodeId']!r} paused again: it did not take this payload")
    _report(view, target, as_json)


@main.command()
@click.argument("run_id")
@click.option(
    "--reason", default="Cancelled", show_default=True, envvar="REFLUXO_REASON", show_envvar=True
)
@json_option
@target_options
def cancel(run_id: str, reason: str, as_json: bool, target: Target) -> None:
    """Cancel a run (it fails with the reason); exit code 0 once it is cancelled."""
    from refluxo.host.run_text import describe

    with target.client(deliver=False) as client:
        view = client.cancel(run_id, reason)
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        click.echo(f"run {run_id}: {describe(view)}")


@main.command()
@click.option(
    "--grace",
    "grace_s",
    type=FiniteRange(0, MAX_GRACE_S),
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
def validate(file: Path, app_spec: str | None, no_app: bool, as_json: bool) -> None:
    """Check a workflow file; print each problem with its line (exit code 1 on errors).

    Node types, the sourceHandle of each edge against the handles its node type
    declares, and the workflows a map, parallel or call node names (with its other data
    as written) are checked against the App (--app, default the examples).
    """
    from refluxo.runtime.limits import RuntimeLimits
    from refluxo.workflow_check import (
        Problem,
        WorkflowTextError,
        check_workflow_text,
        workflow_text,
    )

    try:
        app = None if no_app else load_app(app_spec)
    except click.BadParameter as err:
        hint = f"{err.message} (--no-app checks the file without node types and handles)"
        raise click.BadParameter(hint, param_hint="--app") from err
    try:
        text = workflow_text(file.read_bytes())
    except WorkflowTextError as err:
        problems = [Problem(err.line, "error", err.message)]
    else:
        limits = RuntimeLimits() if app is None else app.limits
        if app is None:
            problems = check_workflow_text(
                text, max_nodes=limits.max_nodes, max_edges=limits.max_edges
            )
        else:
            from refluxo.runtime.fanout import child_run_problems

            problems = check_workflow_text(
                text,
                app.node_types,
                lambda workflow: child_run_problems(workflow, app, names=True),
                max_nodes=limits.max_nodes,
                max_edges=limits.max_edges,
            )
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


def _shown(opened: bool, where: str) -> str:
    return f"opened {where}" if opened else f"no browser found here: open {where} yourself"


@main.command()
@click.argument("workflow", required=False)
@click.option(
    "--run",
    "run_id",
    help="Mark what this run did: the path it took, its failed, retrying or paused node "
    "(without WORKFLOW: the graph the run executes).",
    envvar="REFLUXO_RUN",
    show_envvar=True,
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "svg", "json"]),
    default="mermaid",
    show_default=True,
    envvar="REFLUXO_GRAPH_FORMAT",
    show_envvar=True,
    help="Mermaid text, an SVG picture, or the graph and node states as JSON.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="REFLUXO_GRAPH_OUTPUT",
    show_envvar=True,
    help="Write to this file instead of standard output.",
)
@click.option(
    "--open",
    "open_it",
    is_flag=True,
    envvar="REFLUXO_GRAPH_OPEN",
    show_envvar=True,
    help="Show it in the browser: with --url and --run, the run's page of the server's "
    "inspector; otherwise the SVG picture (written to --output or a temporary file).",
)
@target_options
def graph(
    workflow: str | None,
    run_id: str | None,
    fmt: str,
    output: Path | None,
    open_it: bool,
    target: Target,
) -> None:
    """Draw WORKFLOW (a JSON file, or a workflow the App registers) or a run's graph.

    With --run, the nodes the run visited and the edges it followed are green, the node it
    failed at red (with its failed attempts), a node waiting for a retry orange, a paused
    node blue.
    """
    from refluxo.host.run_graph import graph_of_wire, registered_graph, run_graph, run_path

    if workflow is None and run_id is None:
        raise click.UsageError("name a WORKFLOW (a file or a registered workflow), or --run RUN")
    if open_it and target.url and run_id:
        import urllib.parse
        import webbrowser

        page = f"{target.url.rstrip('/')}/ui#/runs/{urllib.parse.quote(run_id, safe='')}"
        click.echo(_shown(webbrowser.open(page), page))
        return
    drawn: dict[str, Any]
    path = None
    with target.client(deliver=False) as client:
        if run_id:
            path = run_path(client.get(run_id, timeline_limit=1000))
        if workflow is None:
            assert run_id is not None
            drawn = run_graph(client, run_id)
        elif Path(workflow).is_file():
            from refluxo.runtime.app import load_workflow_file

            drawn = graph_of_wire(load_workflow_file(workflow))
        else:
            from refluxo.host.options import load_app

            drawn = registered_graph(load_app(target.app_spec), workflow)
    if open_it and fmt != "svg":
        fmt = "svg"
    if fmt == "json":
        states = {node: state._asdict() for node, state in (path.states if path else {}).items()}
        text = json.dumps({**drawn, "states": states}, indent=2) + "\n"
    elif fmt == "svg":
        from refluxo.host.svg import to_svg

        text = to_svg(drawn, path)
    else:
        from refluxo.host.mermaid import to_mermaid

        text = to_mermaid(drawn, path)
    if open_it and output is None:
        import tempfile

        name = (run_id or Path(workflow or "graph").stem).replace("/", "_")
        output = Path(tempfile.gettempdir()) / f"refluxo-{name}.svg"
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
    if open_it and output is not None:
        import webbrowser

        click.echo(_shown(webbrowser.open(output.resolve().as_uri()), str(output)))


@main.command()
@app_option
@click.option(
    "--port",
    default=0,
    help="Port of the local server (0: any free port).",
    envvar="REFLUXO_DEMO_PORT",
    show_envvar=True,
)
def demo(app_spec: str | None, port: int) -> None:
    """Run the example workflows through the local HTTP API, on a fresh database."""
    from refluxo.host.demo import run_demo
    from refluxo.host.logs import formatter_for, log_format
    from refluxo.host.settings import ConfigurationError

    # The demo tells each run's story itself; of the runtime's own lines (a retried attempt
    # of the flaky example), only errors are written, formatted as `serve` writes them. A
    # handler of refluxo's loggers, for the demo's time: the process's logging is its own.
    try:
        formatter = formatter_for(log_format(os.environ, cloud=False))
    except ConfigurationError as err:
        raise click.ClickException(str(err)) from err
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.setLevel(logging.ERROR)
    logger = logging.getLogger("refluxo")
    logger.addHandler(handler)
    try:
        run_demo(load_app(app_spec), port, click.secho)
    finally:
        logger.removeHandler(handler)


if __name__ == "__main__":
    main()
