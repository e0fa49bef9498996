"""The composition root: settings in, a wired deployment out.

Entry points call :func:`build_deployment` with the settings they read and the user's App;
this is the one place that chooses backends, so adapters depend on the runtime and never
the reverse. Google Cloud libraries are imported only when the cloud backend is chosen.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refluxo.api.auth import ApiKeyCheck
from refluxo.api.events import EventResult, handle_message
from refluxo.api.http import HttpApi
from refluxo.host.settings import CloudSettings, ConfigurationError, EmbeddedSettings, Settings
from refluxo.runtime.app import App
from refluxo.runtime.dispatcher import StepBudget
from refluxo.runtime.service import RunService


def _budget(settings: Settings) -> StepBudget:
    return StepBudget(max_steps=settings.batch_steps, max_ms=settings.batch_ms)


def import_app(spec: str, search_path: Path | None = None) -> App:
    """Import ``module:attribute`` and check that it is an :class:`App`."""
    module_name, _, attribute = spec.partition(":")
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

    service: RunService
    api: HttpApi
    closer: Any = None

    def on_message(self, data: bytes, attributes: dict[str, str], message_id: str) -> EventResult:
        return handle_message(self.service, data, attributes, message_id)

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


def build_deployment(settings: Settings, app: App) -> Deployment:
    """Wire the store, scheduler, dispatcher, service and API for ``settings``."""
    authenticate = ApiKeyCheck(settings.api_key) if settings.api_key else None
    if isinstance(settings, EmbeddedSettings):
        from refluxo.host.embedded import EmbeddedRuntime

        runtime = EmbeddedRuntime(
            app, settings.database, workers=settings.workers, budget=_budget(settings)
        ).start()
        runtime.service.reconcile()
        return Deployment(
            runtime.service, HttpApi(runtime.service, authenticate=authenticate), runtime.stop
        )
    return _build_cloud(settings, app, authenticate)


def _build_cloud(settings: CloudSettings, app: App, authenticate: ApiKeyCheck | None) -> Deployment:
    from google.cloud import firestore

    from refluxo.backends.gcp.cloud_tasks import (
        CloudTasksScheduler,
        tasks_client,
        tasks_client_for_emulator,
    )
    from refluxo.backends.gcp.firestore.store import FirestoreStore
    from refluxo.backends.gcp.oidc import OidcCheck
    from refluxo.runtime.dispatcher import Dispatcher

    store = FirestoreStore(
        firestore.Client(project=settings.project, database=settings.firestore_database),
        prefix=settings.collection_prefix,
        clock=app.clock,
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
        dispatch_deadline_s=settings.function_timeout_s,
        clock=app.clock,
    )
    service = RunService(Dispatcher(app, store, scheduler, budget=_budget(settings)))
    verify_step = None
    if settings.verify_oidc:
        assert settings.oidc_audience is not None
        assert settings.tasks_service_account is not None
        verify_step = OidcCheck(settings.oidc_audience, settings.tasks_service_account)
    api = HttpApi(service, authenticate=authenticate, authenticate_step=verify_step)
    return Deployment(service, api)
