"""Start and stop local Google Cloud emulators (and functions-framework) for tests.

Every server is started on 127.0.0.1, on a free port, in its own process group, and is
ready when a condition holds (its port answers), polled until a deadline: never after a
fixed sleep. Stopping signals the process group whose id is the PID of the process this
module started (the emulators' launch scripts and gunicorn fork children), so nothing but
what was started here is ever signalled.

Where an emulator is missing the tests FAIL with a message saying how to install it:
an emulator test that silently skips would let the Google Cloud backends rot unseen.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FIRESTORE_JAR = Path(
    os.environ.get(
        "REFLUXO_FIRESTORE_EMULATOR_JAR",
        "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
    )
)
PUBSUB_EMULATOR = Path(
    os.environ.get(
        "REFLUXO_PUBSUB_EMULATOR",
        "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    )
)
TASKS_EMULATOR = Path(
    os.environ.get(
        "REFLUXO_TASKS_EMULATOR", str(REPO / ".venv-tasks" / "bin" / "gcloud-tasks-emulator")
    )
)

EMULATOR_PROJECT = "demo-test"
"""A ``demo-`` project: the emulators accept it and no real project can be reached."""

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05


class EmulatorError(RuntimeError):
    """An emulator did not start, or died while starting."""


def fail_missing(what: str, path: Path | str, how: str) -> None:
    """Fail the requesting tests loudly: a missing emulator is a broken setup, not a skip."""
    pytest.fail(
        f"\n\n*** {what} is missing ({path}). The Google Cloud backend tests need it. ***\n"
        f"Install it: {how}\n",
        pytrace=False,
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """A server process started in its own process group, with its output in a log file."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix=f"refluxo-{name}-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self._stopped = False
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], timeout: float = START_TIMEOUT_S) -> None:
        """Poll ``ready`` until it holds; raise if the process dies or the deadline passes."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()  # never set: wait() is the polling interval
        while not ready():
            if self.exited():
                raise EmulatorError(
                    f"{self.name} (pid {self.pid}) exited with code {self.process.returncode} "
                    f"while starting: {' '.join(self.command)}\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                log = self.log_tail()
                self.stop()
                raise EmulatorError(
                    f"{self.name} (pid {self.pid}) not ready after {timeout:.0f} s\n{log}"
                )
            pause.wait(POLL_INTERVAL_S)

    def stop(self) -> None:
        """Terminate the process group this process leads; kill it if it lingers."""
        if self._stopped:
            return
        self._stopped = True
        if not self.exited():
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
        # Children of the group (a launch script's JVM, gunicorn workers) may outlive it.
        self._signal(signal.SIGKILL)
        self._log.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def _signal(self, signum: int) -> None:
        # The group id is the PID of the process started here (start_new_session=True).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def local_urlopen(
    request: str | urllib.request.Request, timeout: float = 5.0
) -> http.client.HTTPResponse:
    """``urlopen`` that never goes through an HTTP proxy from the environment.

    Every server here is on 127.0.0.1; a CI runner's ``http_proxy`` must not intercept it.
    """
    response: http.client.HTTPResponse = _LOCAL_HTTP.open(request, timeout=timeout)
    return response


def http_answers(url: str, *, expect_ok: bool = False) -> Callable[[], bool]:
    """A readiness condition: ``url`` answers HTTP (with a 2xx if ``expect_ok``)."""

    def check() -> bool:
        try:
            with local_urlopen(url, timeout=1.0) as response:
                return not expect_ok or 200 <= response.status < 300
        except urllib.error.HTTPError:
            return not expect_ok
        except (OSError, ValueError):
            return False

    return check


def tcp_answers(host: str, port: int) -> Callable[[], bool]:
    """A readiness condition: something accepts TCP connections on ``host:port``."""

    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    return check


def start_with_free_port(
    name: str,
    launch: Callable[[int], tuple[ManagedProcess, Callable[[], bool]]],
    *,
    attempts: int = 3,
    timeout: float = START_TIMEOUT_S,
) -> tuple[ManagedProcess, int]:
    """Start a server on a free port; pick another only if that port was taken meanwhile.

    Any other failure to start is raised at once, with the server's log.
    """
    last: EmulatorError | None = None
    for _ in range(attempts):
        port = free_port()
        process, ready = launch(port)
        try:
            process.wait_ready(ready, timeout)
        except EmulatorError as err:
            process.stop()
            if not _port_conflict(str(err)):
                raise
            last = err
            continue
        return process, port
    raise EmulatorError(f"{name} could not start after {attempts} attempts: {last}") from last


def _port_conflict(log: str) -> bool:
    lowered = log.lower()
    return any(sign in lowered for sign in ("address already in use", "bindexception", "errno 98"))


# -- the emulators ----------------------------------------------------------------------------


@dataclass
class Emulator:
    """A running emulator: its process and where it listens."""

    process: ManagedProcess
    host_port: str


def start_firestore() -> Emulator:
    """The official Firestore emulator, started straight from its jar (one JVM, no gcloud)."""
    java = shutil.which("java")
    if java is None:
        fail_missing("Java (17 or newer)", "java", "apt-get install -y openjdk-17-jre-headless")
    if not FIRESTORE_JAR.is_file():
        fail_missing(
            "The Firestore emulator jar",
            FIRESTORE_JAR,
            "apt-get install -y google-cloud-cli-firestore-emulator (or `gcloud components "
            "install cloud-firestore-emulator`), or point REFLUXO_FIRESTORE_EMULATOR_JAR at it",
        )
    assert java is not None

    def launch(port: int) -> tuple[ManagedProcess, Callable[[], bool]]:
        process = ManagedProcess(
            "firestore-emulator",
            [
                java,
                "-Duser.language=en",
                "-cp",
                str(FIRESTORE_JAR),
                "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                "start",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
        )
        return process, http_answers(f"http://127.0.0.1:{port}/", expect_ok=True)

    process, port = start_with_free_port("firestore emulator", launch)
    return Emulator(process, f"127.0.0.1:{port}")


def reset_firestore(host_port: str, project: str = EMULATOR_PROJECT) -> None:
    """Delete every document of ``project`` in the emulator (its DELETE endpoint)."""
    request = urllib.request.Request(
        f"http://{host_port}/emulator/v1/projects/{project}/databases/(default)/documents",
        method="DELETE",
    )
    with local_urlopen(request, timeout=30) as response:
        if not 200 <= response.status < 300:
            raise EmulatorError(f"resetting the Firestore emulator answered {response.status}")


def start_pubsub() -> Emulator:
    """The official Pub/Sub emulator (its launch script execs one JVM)."""
    if shutil.which("java") is None:
        fail_missing("Java (17 or newer)", "java", "apt-get install -y openjdk-17-jre-headless")
    if not PUBSUB_EMULATOR.is_file():
        fail_missing(
            "The Pub/Sub emulator",
            PUBSUB_EMULATOR,
            "apt-get install -y google-cloud-cli-pubsub-emulator (or `gcloud components "
            "install pubsub-emulator`), or point REFLUXO_PUBSUB_EMULATOR at it",
        )

    def launch(port: int) -> tuple[ManagedProcess, Callable[[], bool]]:
        process = ManagedProcess(
            "pubsub-emulator",
            [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"],
        )
        return process, http_answers(f"http://127.0.0.1:{port}/", expect_ok=True)

    process, port = start_with_free_port("pubsub emulator", launch)
    return Emulator(process, f"127.0.0.1:{port}")


@dataclass
class TasksEmulator(Emulator):
    """A running Cloud Tasks emulator and the queue it was started with."""

    queue_path: str


def start_tasks(queue_path: str, *, max_retries: int | None = 3) -> TasksEmulator:
    """``gcloud-tasks-emulator`` (from its own virtual environment) with one queue.

    The emulator only speaks gRPC: it is ready when it lists ``queue_path``. Note that it
    binds ``[::]`` whatever we ask (it has no host option); clients use 127.0.0.1.
    """
    if not TASKS_EMULATOR.is_file():
        fail_missing(
            "The Cloud Tasks emulator",
            TASKS_EMULATOR,
            "python3 -m venv .venv-tasks && .venv-tasks/bin/pip install gcloud-tasks-emulator "
            "(its own venv: it pins protobuf<5), or point REFLUXO_TASKS_EMULATOR at it",
        )

    def launch(port: int) -> tuple[ManagedProcess, Callable[[], bool]]:
        command = [str(TASKS_EMULATOR), "start", f"--port={port}", "-d", queue_path]
        if max_retries is not None:
            command += ["-r", str(max_retries)]
        process = ManagedProcess("tasks-emulator", command)
        return process, _lists_queue(f"127.0.0.1:{port}", queue_path)

    process, port = start_with_free_port("tasks emulator", launch)
    return TasksEmulator(process, f"127.0.0.1:{port}", queue_path)


def _lists_queue(host_port: str, queue_path: str) -> Callable[[], bool]:
    host, port = host_port.rsplit(":", 1)
    port_open = tcp_answers(host, int(port))

    def check() -> bool:
        if not port_open():
            return False
        from google.api_core import exceptions

        from refluxo.backends.gcp.cloud_tasks import tasks_client_for_emulator

        with tasks_client_for_emulator(host_port) as client:
            try:
                queue = client.get_queue(name=queue_path, timeout=2.0)
            except (exceptions.GoogleAPICallError, exceptions.RetryError):
                return False
        return bool(queue.name == queue_path)

    return check


# -- sharing one emulator per session -------------------------------------------------------

_shared: dict[str, tuple[Emulator, int]] = {}
_shared_lock = threading.Lock()


@contextlib.contextmanager
def shared(key: str, start: Callable[[], Emulator]) -> Iterator[Emulator]:
    """One emulator per ``key`` for the whole session, however many fixtures use it.

    Several conftest files register the same session fixtures (tests/gcp and the store
    contract suite); each registration is a separate fixture to pytest, so the process is
    reference-counted here and stopped when the last user is done.
    """
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None:
            entry = (start(), 0)
        emulator, users = entry
        _shared[key] = (emulator, users + 1)
    try:
        yield emulator
    finally:
        with _shared_lock:
            emulator, users = _shared[key]
            if users <= 1:
                del _shared[key]
                emulator.process.stop()
            else:
                _shared[key] = (emulator, users - 1)


# -- functions-framework ------------------------------------------------------------------


@dataclass
class FunctionServer:
    """A running functions-framework server."""

    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> FunctionServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def functions_framework_binary() -> Path:
    candidate = Path(sys.executable).parent / "functions-framework"
    if candidate.is_file():
        return candidate
    found = shutil.which("functions-framework")
    if found is None:
        fail_missing(
            "functions-framework",
            candidate,
            ".venv/bin/pip install -e '.[gcp]' (functions-framework>=3.8,<4)",
        )
    return Path(str(found))


def start_functions_framework(
    source: Path,
    target: str,
    *,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    signature_type: str | None = None,
    asgi: bool = False,
    port: int | None = None,
    timeout: float = 30.0,
) -> FunctionServer:
    """Serve ``target`` from ``source`` on 127.0.0.1 and wait until it answers HTTP.

    Args:
        source: The Python file defining the function (``main.py``).
        target: The function's name.
        env: Variables for the server (e.g. ``FIRESTORE_EMULATOR_HOST``), over the
            current environment if ``inherit_env``, else over a minimal one (PATH, HOME).
        signature_type: ``"cloudevent"`` for event functions; HTTP if None.
        asgi: Serve with ``--asgi`` (async handlers via ``functions_framework.aio``).
        port: A fixed port; a free one by default.
        timeout: Seconds to wait for the first HTTP answer (any status counts).

    Returns:
        The running server: call ``stop()``, or use it as a context manager.
    """
    binary = functions_framework_binary()
    base = (
        dict(os.environ)
        if inherit_env
        else {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    )
    environment = {**base, **(env or {})}

    def launch(chosen: int) -> tuple[ManagedProcess, Callable[[], bool]]:
        command = [
            str(binary),
            "--target",
            target,
            "--source",
            str(source),
            "--host",
            "127.0.0.1",
            "--port",
            str(chosen),
        ]
        if signature_type is not None:
            command += ["--signature-type", signature_type]
        if asgi:
            command.append("--asgi")
        process = ManagedProcess(
            f"functions-framework-{target}", command, env=environment, cwd=source.parent
        )
        return process, http_answers(f"http://127.0.0.1:{chosen}/")

    if port is not None:
        process, ready = launch(port)
        try:
            process.wait_ready(ready, timeout)
        except EmulatorError:
            process.stop()
            raise
        return FunctionServer(process, port)
    process, chosen = start_with_free_port("functions-framework", launch, timeout=timeout)
    return FunctionServer(process, chosen)
