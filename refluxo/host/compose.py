"""The composition root: settings in, a wired runtime and deployment out.

This is the one place that chooses backends: a registry maps each ``REFLUXO_BACKEND`` to a
builder, and only builders pair a store with its scheduler or turn on an optional
capability (the embedded store's transactional outbox). Entry points (``main.py``, the
``refluxo`` command, the demo) call :func:`build_runtime` or :func:`build_deployment` and
nothing else, so they cannot diverge. Google Cloud libraries are imported only when that
backend is chosen, and the HTTP layer only when a deployment is built (not for the
``refluxo`` command's run commands, which need only the runtime).
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from refluxo.host.settings import (
    CloudSettings,
    ConfigurationError,
    EmbeddedSettings,
    Settings,
    require_callers_guard,
    require_private_listener,
)
from refluxo.runtime.errors import Forbidden

if TYPE_CHECKING:
    from refluxo.api.auth import Authenticator
    from refluxo.api.events import EventResult
    from refluxo.api.hosts import AllowedHosts
    from refluxo.api.http import HttpApi
    from refluxo.runtime.app import App
    from refluxo.runtime.dispatcher import StepBudget
    from refluxo.runtime.service import RunService


class Runtime(Protocol):
    """A wired runtime: the run service, started and stopped as one."""

    @property
    def service(self) -> RunService: ...

    def start(self) -> Runtime: ...

    def stop(self) -> None: ...


@dataclass
class ServiceRuntime:
    """A runtime whose deliveries arrive from outside (Cloud Tasks calling the step route)."""

    service: RunService

    def start(self) -> ServiceRuntime:
        return self

    def stop(self) -> None:
        self.service.close()


def budget_of(settings: Settings) -> StepBudget:
    """The step budget every backend uses: ``REFLUXO_BATCH_STEPS`` / ``REFLUXO_BATCH_MS``."""
    from refluxo.runtime.dispatcher import StepBudget

    return StepBudget(max_steps=settings.batch_steps, max_ms=settings.batch_ms)


def _embedded(settings: Settings, app: App) -> Runtime:
    assert isinstance(settings, EmbeddedSettings)
    from refluxo.host.embedded import EmbeddedRuntime

    return EmbeddedRuntime(
        app, settings.database, workers=settings.workers, budget=budget_of(settings)
    )


def _cloud(settings: Settings, app: App) -> Runtime:
    assert isinstance(settings, CloudSettings)
    from google.cloud import firestore

    from refluxo.backends.gcp.cloud_tasks import (
        CloudTasksScheduler,
        tasks_client,
        tasks_client_for_emulator,
    )
    from refluxo.backends.gcp.firestore import FirestoreStore
    from refluxo.runtime.dispatcher import Dispatcher
    from refluxo.runtime.service import RunService

    store = FirestoreStore(
        firestore.Client(project=settings.project, database=settings.firestore_database),
        prefix=settings.collection_prefix,
        clock=app.clock,
        retention_days=settings.run_retention_days,
    )
    client = (
        tasks_client_for_emulator(settings.tasks_emulator_host)
        if settings.tasks_emulator_host
        else tasks_client()
    )
    scheduler = CloudTasksScheduler(
        client,
        queue_path=settings.queue_path,
        url=settings.step_url,
        service_account_email=settings.tasks_service_account,
        audience=settings.oidc_audience,
        dispatch_deadline_s=settings.dispatch_deadline_s,
        clock=app.clock,
    )
    dispatcher = Dispatcher(
        app,
        store,
        scheduler,
        budget=budget_of(settings),
        max_platform_retries=settings.max_platform_retries,
    )
    grace_ms = round(settings.reconcile_grace_s * 1000)
    return ServiceRuntime(RunService(dispatcher, reconcile_grace_ms=grace_ms))


def _memory(settings: Settings, app: App) -> Runtime:
    from refluxo.backends.memory import MemoryRuntime

    return MemoryRuntime(app, budget=budget_of(settings))


BACKENDS: dict[str, Callable[[Settings, App], Runtime]] = {
    "embedded": _embedded,
    "gcp": _cloud,
    "memory": _memory,
}
"""Backend name (``REFLUXO_BACKEND``) to the builder that wires it."""


def backend_name(settings: Settings) -> str:
    return "gcp" if isinstance(settings, CloudSettings) else settings.backend


def check_backend(settings: Settings) -> Callable[[Settings, App], Runtime]:
    """The builder of the backend ``settings`` names; a clear error for an unknown one."""
    name = backend_name(settings)
    builder = BACKENDS.get(name)
    if builder is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(f"REFLUXO_BACKEND {name!r} is not a backend (known: {known})")
    return builder


def build_runtime(settings: Settings, app: App) -> Runtime:
    """The runtime for ``settings``, not started yet."""
    return check_backend(settings)(settings, app)


def import_app(spec: str, search_path: Path | None = None) -> App:
    """Import ``module:attribute`` and check that it is an :class:`App`."""
    from refluxo.runtime.app import App

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"expected module:attribute, got {spec!r}")
    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigurationError(f"cannot import the app module {module_name!r}: {err}") from err
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise ConfigurationError(f"{spec!r} is not a refluxo App")
    return app


@dataclass
class Deployment:
    """What the entry points serve: the HTTP API and the message handler."""

    runtime: Runtime
    api: HttpApi
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def service(self) -> RunService:
        return self.runtime.service

    def on_message(self, data: bytes, attributes: dict[str, str], message_id: str) -> EventResult:
        from refluxo.api.events import handle_message

        return handle_message(self.service, data, attributes, message_id)

    def close(self) -> None:
        self.runtime.stop()
        for closer in self.closers:
            closer()

    def announce(self, where: str) -> None:
        """Where this deployment serves (``on http://...``): on the embedded default, a
        process refused for delivering the same database's steps is told."""
        from refluxo.host.embedded import EmbeddedRuntime

        if isinstance(self.runtime, EmbeddedRuntime):
            self.runtime.scheduler.announce(where)


def refuse_deliveries(request: Any) -> None:
    """The step route's guard where deliveries are in-process and no key is configured."""
    raise Forbidden(
        "steps are delivered in-process on this backend; the step route is closed "
        "(set REFLUXO_API_KEY to deliver by hand with the key)"
    )


def _started(settings: Settings, app: App, *, share_database: bool) -> Runtime:
    """The runtime for ``settings``, started. With ``share_database``, an embedded runtime
    whose database another process delivers starts in standby (it serves, and delivers once
    that process stops) instead of refusing to start."""
    from refluxo.host.embedded import EmbeddedRuntime

    runtime = build_runtime(settings, app)
    if share_database and isinstance(runtime, EmbeddedRuntime):
        return runtime.start(standby=True)
    return runtime.start()


def build_deployment(
    settings: Settings,
    app: App,
    *,
    callers: bool = True,
    scheduler: bool = True,
    share_database: bool = False,
) -> Deployment:
    """Wire the runtime and the API for ``settings``, and start delivering.

    Who may call what is decided here, once for every entry point:

    * the callers' routes: the API key (``REFLUXO_API_KEY``) on every backend; without
      one, the embedded default answers only its own machine
      (:class:`~refluxo.api.auth.LoopbackOnly`) and Google Cloud refuses to start unless
      ``REFLUXO_AUTH=iam`` declares that IAM alone guards them;
    * the step route is never open: on the embedded default deliveries are in-process, so
      only the key's holder may deliver by hand (nobody without a key); on Google Cloud
      the tasks invoker's OIDC token (unless ``REFLUXO_VERIFY_OIDC=false``, for the
      emulators);
    * the reconcile route: on the embedded default, as the callers' routes; on Google
      Cloud, the OIDC token of ``REFLUXO_RECONCILER_SERVICE_ACCOUNT`` (default: the tasks
      invoker) for the dispatcher's audience (unless ``REFLUXO_VERIFY_OIDC=false``);
    * the ``Host`` header: on the embedded default, the bound address's names and
      ``REFLUXO_ALLOWED_HOSTS``; on Google Cloud, only when that list is configured.

    ``share_database=True`` (the functions' entry points, whose server may run several
    processes) lets an embedded deployment whose database another process delivers serve,
    and deliver once that process stops; otherwise it raises
    :class:`~refluxo.backends.sqlite.errors.DatabaseInUse` (``refluxo serve``).

    ``callers=False`` builds a deployment whose API serves no caller route, only the step
    route and the public ones (the dispatcher and events functions), and which therefore
    needs no API key. ``scheduler=False`` leaves the step route out (the API function on
    Google Cloud: each function serves only its own routes).

    Raises:
        ConfigurationError: the embedded default would listen beyond this machine without
            a key, or (with ``callers``) the cloud backend has neither key nor
            ``REFLUXO_AUTH=iam``.
    """
    from refluxo.api.auth import ApiKeyCheck, LoopbackOnly
    from refluxo.api.hosts import AllowedHosts
    from refluxo.api.http import HttpApi
    from refluxo.api.routes import CALLER_ROUTES, ROUTES, STEP_ROUTES

    require_private_listener(settings)
    if callers:
        require_callers_guard(settings)
    key = ApiKeyCheck(settings.api_key) if settings.api_key else None
    authenticate: Authenticator | None
    authenticate_step: Authenticator | None
    authenticate_reconcile: Authenticator | None
    hosts: AllowedHosts | None
    if isinstance(settings, CloudSettings):
        authenticate = key  # None only with REFLUXO_AUTH=iam: IAM guards the callers
        authenticate_step = authenticate_reconcile = None
        if settings.verify_oidc:
            from refluxo.backends.gcp.oidc import OidcCheck

            assert settings.oidc_audience is not None
            assert settings.tasks_service_account is not None
            authenticate_step = OidcCheck(
                settings.oidc_audience,
                settings.tasks_service_account,
                certs_url=settings.oidc_certs_url,
                checked_by_iam=settings.invoker_iam,
            )
            reconciler = settings.reconciler_service_account or settings.tasks_service_account
            authenticate_reconcile = (
                authenticate_step
                if reconciler == settings.tasks_service_account  # one certificate cache
                else OidcCheck(
                    settings.oidc_audience,
                    reconciler,
                    certs_url=settings.oidc_certs_url,
                    checked_by_iam=settings.invoker_iam,
                )
            )
        hosts = AllowedHosts.parse(settings.allowed_hosts) if settings.allowed_hosts else None
    else:
        authenticate = key or LoopbackOnly()
        authenticate_step = key or refuse_deliveries
        authenticate_reconcile = authenticate
        hosts = AllowedHosts.bound_to(settings.host, settings.allowed_hosts)
    runtime = _started(settings, app, share_database=share_database)
    if isinstance(settings, EmbeddedSettings):
        # Runs left overdue by a previous process: their deliveries are in the outbox, but
        # a database written before it, or by hand, may lack them.
        runtime.service.reconcile(grace_ms=0)
    api = HttpApi(
        runtime.service,
        authenticate=authenticate,
        authenticate_step=authenticate_step,
        authenticate_reconcile=authenticate_reconcile,
        routes=(ROUTES if scheduler else CALLER_ROUTES) if callers else STEP_ROUTES,
        hosts=hosts,
    )
    # Everything built so far (the app, its workflows, the runtime, the API) lives as
    # long as the process: out of the collector's reach, a full collection walks only what
    # steps allocate, so a step's cost does not grow with the size of the loaded workflows.
    gc.freeze()
    return Deployment(runtime, api)
