"""Settings: one frozen object, built the same way by every entry point.

Only entry points (``main.py``, the ``refluxo`` command) read ``os.environ``. They call
:func:`load_settings` with the environment, and the command line adds its flags on top
(every flag is the twin of one variable below, by name: ``--batch`` is
``REFLUXO_BATCH_STEPS``), so a flag and its variable can never mean different things. The
result is handed down to the composition root. With no cloud settings the embedded default
is used, so the same ``main.py`` runs on a laptop and on Cloud Functions.

Variables: ``REFLUXO_APP``, ``REFLUXO_BACKEND`` (``embedded``, ``memory`` or ``gcp``),
``REFLUXO_API_KEY``, ``REFLUXO_ALLOWED_HOSTS``, ``REFLUXO_BATCH_STEPS``,
``REFLUXO_BATCH_MS``; embedded: ``REFLUXO_DB``, ``REFLUXO_WORKERS``, ``REFLUXO_HOST``,
``REFLUXO_PORT``; Google Cloud: ``REFLUXO_AUTH`` and those of :class:`CloudSettings`.

Who may call is decided here too, so that no entry point can get it wrong:

* the embedded default without an API key serves only its own machine: it refuses to listen
  on an address other machines reach (``REFLUXO_HOST``: :func:`require_private_listener`)
  and answers only loopback peers;
* the Google Cloud backend serves the callers' routes only with ``REFLUXO_API_KEY``, unless
  the deployment declares ``REFLUXO_AUTH=iam`` (Cloud Run IAM alone guards the API):
  :func:`require_callers_guard`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from refluxo.errors import RefluxoError
from refluxo.host.defaults import DEFAULT_APP as DEFAULT_APP
from refluxo.host.defaults import DEFAULT_DATABASE as DEFAULT_DATABASE
from refluxo.host.defaults import DEFAULT_WORKERS as DEFAULT_WORKERS


class ConfigurationError(RefluxoError):
    """The environment does not describe a runnable deployment; the message says why."""


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    """Run on SQLite and the local scheduler (``backend="memory"``: nothing durable).

    ``host`` and ``port`` are where ``refluxo serve`` listens; ``allowed_hosts`` are the
    ``Host`` names answered beyond that address's own (``REFLUXO_ALLOWED_HOSTS``).
    """

    app: str
    database: Path
    workers: int
    api_key: str | None
    batch_steps: int = 1
    batch_ms: float | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    backend: str = "embedded"
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CloudSettings:
    """Run on Firestore and Cloud Tasks.

    ``tasks_emulator_host`` and ``verify_oidc=False`` exist for tests against the local
    emulators; a deployment leaves the first unset and the second true. ``auth`` is
    ``"api-key"`` (the callers' routes need ``api_key``) or ``"iam"`` (Cloud Run IAM alone
    guards them, declared with ``REFLUXO_AUTH=iam``). ``allowed_hosts``: when set, the
    ``Host`` names answered (the platform routes by host already).
    """

    app: str
    project: str
    region: str
    tasks_queue: str
    step_url: str
    tasks_service_account: str | None
    oidc_audience: str | None
    verify_oidc: bool
    function_timeout_s: float
    collection_prefix: str
    firestore_database: str
    api_key: str | None
    tasks_emulator_host: str | None
    batch_steps: int = 1
    batch_ms: float | None = None
    auth: str = "api-key"
    allowed_hosts: tuple[str, ...] = ()
    max_platform_retries: int = 10
    """Past this many Cloud Tasks retries of one step (``REFLUXO_MAX_PLATFORM_RETRIES``),
    the step counts as a failed attempt of its node, which its retry policy decides."""
    dispatch_deadline_s: float = 120.0
    """How long Cloud Tasks waits for a step (``REFLUXO_DISPATCH_DEADLINE_S``): the function
    timeout plus a margin for a cold start, so the queue never gives up on a step that is
    still running; at most 1,800 s, the service's limit."""

    run_retention_days: int | None = None
    """Finished runs and their results expire this many days after they end
    (``REFLUXO_RUN_RETENTION_DAYS``; unset: kept forever). Firestore's TTL deletes them."""
    reconciler_service_account: str | None = None
    """The identity whose OIDC token may call ``POST /tasks/reconcile``
    (``REFLUXO_RECONCILER_SERVICE_ACCOUNT``; unset: the tasks service account)."""
    reconcile_grace_s: float = 600.0
    """How long past its due time a run's next step must be before the reconciler schedules
    it again (``REFLUXO_RECONCILE_GRACE_S``); at least the dispatch deadline, so a step
    still in progress is never taken for stalled."""
    oidc_certs_url: str | None = None
    """Where the OIDC signing certificates are published (``REFLUXO_OIDC_CERTS_URL``;
    unset: Google's). Only for a private token issuer, such as a test's."""
    invoker_iam: bool = False
    """Cloud Run's IAM checks every request's identity token before the function sees it
    (``REFLUXO_INVOKER_IAM``: the function requires authentication, as Terraform deploys
    it): a token whose signature Cloud Run then removed is judged by its claims."""

    @property
    def queue_path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/queues/{self.tasks_queue}"


Settings = EmbeddedSettings | CloudSettings

_BACKEND_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
"""A backend's name; which names exist is the composition root's registry's business."""

MAX_DISPATCH_DEADLINE_S = 1800.0
"""Cloud Tasks' longest dispatch deadline for HTTP targets."""

DEADLINE_MARGIN_S = 60.0
"""Added to the function timeout for the dispatch deadline (a cold start, the network)."""

_REQUIRED_FOR_CLOUD = (
    "GOOGLE_CLOUD_PROJECT",
    "REFLUXO_REGION",
    "REFLUXO_TASKS_QUEUE",
    "REFLUXO_STEP_URL",
)


def _https_url(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not raw.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ConfigurationError(
            f"{name} must be an https URL (or http on 127.0.0.1/localhost), got {raw!r}"
        )
    return raw


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from err
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole number in ASCII digits: ``"2.5"``, ``"1e2"`` and non-ASCII digits are refused,
    as the command line refuses them."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}")
    value = int(text)
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {raw!r}")
    return value


MIN_API_KEY_LENGTH = 16
"""The shortest API key accepted (as :class:`refluxo.api.auth.ApiKeyCheck` requires)."""

AUTH_MODES = ("api-key", "iam")
"""``REFLUXO_AUTH``: what guards the callers' routes on Google Cloud."""


def _allowed_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("REFLUXO_ALLOWED_HOSTS") or ""
    entries = tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    if not entries:
        return entries
    from refluxo.api.hosts import AllowedHosts  # here: most commands never parse a Host

    try:
        AllowedHosts.parse(entries)
    except ValueError as err:
        raise ConfigurationError(f"REFLUXO_ALLOWED_HOSTS: {err}") from None
    return entries


def require_callers_guard(settings: Settings) -> None:
    """Refuse to serve the callers' routes without an application-level check.

    The embedded default is always guarded (the API key, or its own machine only). On
    Google Cloud, the callers' routes need ``REFLUXO_API_KEY``, unless the deployment
    declares ``REFLUXO_AUTH=iam``: an unset key must never silently mean "no check".

    Raises:
        ConfigurationError: the cloud backend has no API key and does not declare IAM.
    """
    if isinstance(settings, CloudSettings) and not settings.api_key and settings.auth != "iam":
        raise ConfigurationError(
            "the Google Cloud backend serves the run API only behind an API key: set "
            "REFLUXO_API_KEY (Terraform mounts it from Secret Manager), or set "
            "REFLUXO_AUTH=iam to declare that Cloud Run IAM alone guards the API"
        )


def require_private_listener(settings: Settings) -> None:
    """Refuse to serve the embedded default to other machines without an API key.

    ``REFLUXO_HOST`` (``refluxo serve --host``) is where the local server listens; any
    address but loopback is reachable by others, and without a key they would drive every
    run. (``main.py`` answers only loopback peers without a key, whatever
    functions-framework binds.)

    Raises:
        ConfigurationError: a non-loopback ``host`` and no API key.
    """
    if not isinstance(settings, EmbeddedSettings) or settings.api_key:
        return
    from refluxo.api.hosts import is_loopback

    if not is_loopback(settings.host):
        raise ConfigurationError(
            f"listening on {settings.host!r} would serve the API to other machines "
            "without a key: set REFLUXO_API_KEY (--api-key), or listen on 127.0.0.1"
        )


def load_settings(env: Mapping[str, str]) -> Settings:
    """Settings from environment variables, validated, with every problem named at once.

    ``REFLUXO_BACKEND=gcp`` (or any of the cloud variables) selects Google Cloud; then
    ``GOOGLE_CLOUD_PROJECT``, ``REFLUXO_REGION``, ``REFLUXO_TASKS_QUEUE`` and
    ``REFLUXO_STEP_URL`` are required. Otherwise the embedded default is used.
    """
    app = env.get("REFLUXO_APP") or DEFAULT_APP
    if ":" not in app:
        raise ConfigurationError(f"REFLUXO_APP must be module:attribute, got {app!r}")
    api_key = env.get("REFLUXO_API_KEY") or None
    if api_key is not None and len(api_key) < MIN_API_KEY_LENGTH:
        raise ConfigurationError(
            f"the API key (--api-key or REFLUXO_API_KEY) must be at least {MIN_API_KEY_LENGTH} "
            "characters long"
        )
    backend = (env.get("REFLUXO_BACKEND") or "").strip().lower()
    cloud_hints = any(env.get(name) for name in _REQUIRED_FOR_CLOUD[1:])
    if backend and not _BACKEND_NAME.fullmatch(backend):
        raise ConfigurationError(
            f"REFLUXO_BACKEND must be a backend name ('embedded', 'memory', 'gcp'...), "
            f"got {backend!r}"
        )
    batch_steps = _integer(env, "REFLUXO_BATCH_STEPS", 1, 1, 1000)
    batch_ms = _number(env, "REFLUXO_BATCH_MS", 0, 0, 3_600_000) or None
    allowed_hosts = _allowed_hosts(env)
    auth = (env.get("REFLUXO_AUTH") or "api-key").strip().lower()
    if auth not in AUTH_MODES:
        raise ConfigurationError(
            f"REFLUXO_AUTH must be 'api-key' or 'iam', got {env.get('REFLUXO_AUTH')!r}"
        )
    if (backend and backend != "gcp") or (backend == "" and not cloud_hints):
        host = (env.get("REFLUXO_HOST") or "127.0.0.1").strip()
        return EmbeddedSettings(
            app=app,
            database=Path(env.get("REFLUXO_DB") or DEFAULT_DATABASE),
            workers=_integer(env, "REFLUXO_WORKERS", DEFAULT_WORKERS, 0, 256),
            api_key=api_key,
            batch_steps=batch_steps,
            batch_ms=batch_ms,
            host=host,
            port=_integer(env, "REFLUXO_PORT", 8080, 0, 65535),
            backend=backend or "embedded",
            allowed_hosts=allowed_hosts,
        )

    missing = [name for name in _REQUIRED_FOR_CLOUD if not env.get(name)]
    if missing:
        raise ConfigurationError(
            "the Google Cloud backend needs these environment variables: " + ", ".join(missing)
        )
    verify_oidc = _flag(env, "REFLUXO_VERIFY_OIDC", True)
    invoker_iam = _flag(env, "REFLUXO_INVOKER_IAM", False)
    tasks_emulator_host = env.get("REFLUXO_TASKS_EMULATOR_HOST") or None
    if not verify_oidc and not invoker_iam and tasks_emulator_host is None:
        raise ConfigurationError(
            "REFLUXO_VERIFY_OIDC=false leaves the step and reconcile routes to IAM alone: "
            "declare that IAM guards them with REFLUXO_INVOKER_IAM=true (or run against the "
            "Cloud Tasks emulator, REFLUXO_TASKS_EMULATOR_HOST)"
        )
    tasks_account = env.get("REFLUXO_TASKS_SERVICE_ACCOUNT") or None
    audience = env.get("REFLUXO_OIDC_AUDIENCE") or None
    if verify_oidc and not (tasks_account and audience):
        raise ConfigurationError(
            "REFLUXO_VERIFY_OIDC is on, so REFLUXO_TASKS_SERVICE_ACCOUNT and "
            "REFLUXO_OIDC_AUDIENCE are required (the identity and audience Cloud Tasks "
            "uses to call the step endpoint)"
        )
    step_url = env["REFLUXO_STEP_URL"]
    if not step_url.startswith(("https://", "http://")):
        raise ConfigurationError(f"REFLUXO_STEP_URL must be an http(s) URL, got {step_url!r}")
    timeout_s = _number(env, "REFLUXO_FUNCTION_TIMEOUT_S", 60, 1, MAX_DISPATCH_DEADLINE_S)
    deadline_s = _number(
        env,
        "REFLUXO_DISPATCH_DEADLINE_S",
        min(timeout_s + DEADLINE_MARGIN_S, MAX_DISPATCH_DEADLINE_S),
        15,
        MAX_DISPATCH_DEADLINE_S,
    )
    if deadline_s < timeout_s:
        raise ConfigurationError(
            f"REFLUXO_DISPATCH_DEADLINE_S ({deadline_s:g}) must not be shorter than "
            f"REFLUXO_FUNCTION_TIMEOUT_S ({timeout_s:g}): Cloud Tasks would retry a step "
            "while it still runs"
        )
    if batch_steps > 1 and batch_ms is None:
        batch_ms = timeout_s * 1000 / 2
    if batch_ms is not None and batch_ms > timeout_s * 1000 / 2:
        raise ConfigurationError(
            f"REFLUXO_BATCH_MS ({batch_ms:g}) must stay under half the function timeout "
            f"({timeout_s:g} s), so a batch of steps commits before the platform stops it"
        )
    return CloudSettings(
        app=app,
        project=env["GOOGLE_CLOUD_PROJECT"],
        region=env["REFLUXO_REGION"],
        tasks_queue=env["REFLUXO_TASKS_QUEUE"],
        step_url=step_url,
        tasks_service_account=tasks_account,
        oidc_audience=audience,
        verify_oidc=verify_oidc,
        invoker_iam=invoker_iam,
        function_timeout_s=timeout_s,
        dispatch_deadline_s=deadline_s,
        max_platform_retries=_integer(env, "REFLUXO_MAX_PLATFORM_RETRIES", 10, 0, 1000),
        collection_prefix=env.get("REFLUXO_COLLECTION_PREFIX") or "refluxo",
        firestore_database=env.get("REFLUXO_FIRESTORE_DATABASE") or "(default)",
        api_key=api_key,
        tasks_emulator_host=tasks_emulator_host,
        batch_steps=batch_steps,
        batch_ms=batch_ms,
        auth=auth,
        allowed_hosts=allowed_hosts,
        run_retention_days=(
            _integer(env, "REFLUXO_RUN_RETENTION_DAYS", 0, 1, 3650)
            if env.get("REFLUXO_RUN_RETENTION_DAYS")
            else None
        ),
        reconciler_service_account=env.get("REFLUXO_RECONCILER_SERVICE_ACCOUNT") or None,
        reconcile_grace_s=_number(
            env, "REFLUXO_RECONCILE_GRACE_S", max(600.0, 2 * deadline_s), deadline_s, 86_400
        ),
        oidc_certs_url=_https_url(env, "REFLUXO_OIDC_CERTS_URL"),
    )
