"""What every ``refluxo`` command shares: its options, and where run commands act.

A run command acts on the local database (``--db``) or, with ``--url``, on a running
server; :class:`Target` holds that choice and opens the right client. Settings are built
through :func:`settings_from`, the same path ``main.py`` takes, so a flag and its
environment variable twin always mean the same.
"""

from __future__ import annotations

import functools
import math
import os
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from refluxo.host.defaults import DEFAULT_APP, DEFAULT_DATABASE

if TYPE_CHECKING:
    from refluxo.api.client import RunClient, RunReader
    from refluxo.host.project import AppChoice
    from refluxo.host.settings import Settings
    from refluxo.runtime.app import App


def app_choice(spec: str | None) -> AppChoice:
    """The App to use: ``spec`` (``--app``/``REFLUXO_APP``), else the project's, else the
    default (:mod:`refluxo.host.project`)."""
    from refluxo.host.project import ProjectError, choose_app

    try:
        return choose_app(spec, Path.cwd())
    except ProjectError as err:
        raise click.BadParameter(str(err), param_hint="--app") from err


def app_spec_of(spec: str | None) -> str:
    """The ``module:attribute`` :func:`app_choice` picks."""
    return app_choice(spec).spec


def load_app(spec: str | None) -> App:
    """Import the App :func:`app_choice` picks (its project's directory is importable)."""
    from refluxo.host.compose import import_app
    from refluxo.host.settings import ConfigurationError

    choice = app_choice(spec)
    try:
        return import_app(choice.spec, choice.root)
    except ConfigurationError as err:
        where = "" if choice.source in ("--app", "default") else f" (named in {choice.source})"
        raise click.BadParameter(f"{err}{where}", param_hint="--app") from err


def settings_from(**flags: str | None) -> Settings:
    """The settings for this command: the environment, with the given flags on top.

    Every flag is named after its environment variable twin, so both reach
    :func:`load_settings` the same way; a flag left at None is not given.
    """
    from refluxo.host.settings import ConfigurationError, load_settings

    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return load_settings({**os.environ, **given, "REFLUXO_BACKEND": "embedded"})
    except ConfigurationError as err:
        raise click.ClickException(str(err)) from err


def parse_json(value: str | None, what: str) -> Any:
    """``--input`` or ``--payload`` read as the API reads a body (a repeated key, ``NaN``,
    a lone surrogate or nesting past the limit are refused here as there): a usage error
    rather than the server's 400 after the command started."""
    if value is None:
        return None
    from refluxo.api.parsing import parse_json as parse_as_the_api_does
    from refluxo.errors import LimitExceededError
    from refluxo.runtime.errors import BadRequest

    try:
        return parse_as_the_api_does(value.encode("utf-8", "surrogatepass"), what)
    except (BadRequest, LimitExceededError) as err:
        raise click.BadParameter(f"{what} is not valid JSON: {err}") from None


app_option = click.option(
    "--app",
    "app_spec",
    envvar="REFLUXO_APP",
    show_envvar=True,
    help="The App to use, as module:attribute [default: [tool.refluxo] app in the nearest "
    f"pyproject.toml, else {DEFAULT_APP}].",
)
db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DATABASE,
    show_default=True,
    envvar="REFLUXO_DB",
    show_envvar=True,
    help="The SQLite database of the embedded default.",
)


class FiniteRange(click.FloatRange):
    """A ``FloatRange`` that refuses NaN and the infinities (NaN passes every bound)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def server_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--url``: an http(s) URL with a host (a bare ``host:port`` would read as a scheme)."""
    if value is None:
        return None
    if any(char.isspace() or not char.isprintable() for char in value):
        raise click.BadParameter(f"{value!r} is not a URL: it holds spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as err:
        raise click.BadParameter(f"{value!r} is not a URL: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{value!r} is not an http(s) URL with a host, such as http://127.0.0.1:8080"
        )
    return value


url_option = click.option(
    "--url",
    envvar="REFLUXO_URL",
    show_envvar=True,
    callback=server_url,
    help="Talk to a running server instead of the local database.",
)
key_option = click.option(
    "--api-key", envvar="REFLUXO_API_KEY", show_envvar=True, help="API key for --url."
)
token_option = click.option(
    "--id-token",
    envvar="REFLUXO_ID_TOKEN",
    show_envvar=True,
    help="Identity token for --url behind Cloud Run IAM (gcloud auth print-identity-token).",
)


class Target(NamedTuple):
    """Where run commands act: a server (``--url``) or the local database (``--db``).

    A named tuple rather than a frozen dataclass: every command defines it at start-up,
    and a named tuple costs a tenth of the time to define.
    """

    app_spec: str | None
    db: Path
    url: str | None
    api_key: str | None
    id_token: str | None

    @contextmanager
    def client(self, *, deliver: bool) -> Iterator[RunClient]:
        """A client of the target; ``deliver`` runs local workers so runs make progress."""
        from refluxo.api.client import HttpClient, LocalClient
        from refluxo.host.compose import build_runtime

        if self.url:
            yield HttpClient(self.url, api_key=self.api_key, id_token=self.id_token)
            return
        settings = settings_from(
            REFLUXO_APP=app_spec_of(self.app_spec),
            REFLUXO_DB=str(self.db),
            REFLUXO_WORKERS="2" if deliver else "0",
        )
        import logging

        # The command prints each result itself: the runtime's event lines (a failed
        # attempt is a warning) would repeat them on stderr through logging's last resort.
        logging.getLogger("refluxo.events").addHandler(logging.NullHandler())
        runtime = build_runtime(settings, load_app(self.app_spec)).start()
        try:
            yield LocalClient(runtime.service)
        finally:
            runtime.stop()

    @contextmanager
    def reader(self) -> Iterator[RunReader]:
        """A client that only shows runs: the server's, or the local database's rows.

        Locally, runs are read as stored (:class:`~refluxo.api.stored_client.StoredClient`):
        showing a committed run needs neither the app nor the runtime, so the app is not
        imported and the command starts without the engine, its models or pydantic. Nor
        are the settings loaded: of them, reading needs only the database, and settings
        that running would refuse do not keep a stored run from being shown.
        """
        if self.url:
            with self.client(deliver=False) as client:
                yield client
            return
        from refluxo.api.stored_client import StoredClient
        from refluxo.backends.sqlite.db import SqliteDatabase
        from refluxo.backends.sqlite.reader import SqliteRunReader

        db = SqliteDatabase(self.db, pool_size=1)  # --db is REFLUXO_DB, as in the settings
        try:
            yield StoredClient(SqliteRunReader(db))
        finally:
            db.close()


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --app, --db, --url, --api-key and --id-token, passed on as one ``target``."""

    @functools.wraps(command)
    def with_target(
        *args: Any,
        app_spec: str | None,
        db: Path,
        url: str | None,
        api_key: str | None,
        id_token: str | None,
        **kwargs: Any,
    ) -> Any:
        return command(*args, target=Target(app_spec, db, url, api_key, id_token), **kwargs)

    decorated: Callable[..., Any] = with_target
    for option in (token_option, key_option, url_option, db_option, app_option):
        decorated = option(decorated)
    return decorated
