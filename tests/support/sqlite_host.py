"""An embedded runtime behind the local HTTP server, in a process of its own.

Tests that need to limit a whole process (its file descriptors, the size of the files it
may write) run the runtime here, as ``python -m tests.support.sqlite_host DB [WORKERS]``,
and drive it from outside: over HTTP, and with one-line commands on stdin, each answered
by one JSON line on stdout. The first line it prints is ``{"url": ..., "pid": ...}``.

Commands: ``stats`` (open descriptors, resident memory, scheduler counters, how many
``gate`` steps have started), ``open`` (let every ``gate`` step finish), ``quit``.

Workflows: ``one`` (a single ``echo`` step) and ``gated`` (a ``gate`` step, which waits
until ``open``, then two ``echo`` steps).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from refluxo import StepResult
from refluxo.api.http import HttpApi
from refluxo.api.server import LocalServer
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App

REPO_ROOT = Path(__file__).resolve().parents[2]

GATE_TIMEOUT_S = 120.0
"""A gate left closed by a failed test lets its step go after this long."""


def build_host_app(gate: threading.Event, entered: list[int]) -> App:
    """The host's node types and workflows; ``entered`` counts gate steps started."""
    app = App()

    @app.node()
    def echo(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"data": data, "payload": payload})

    @app.node()
    def gate_node(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        entered.append(1)
        gate.wait(GATE_TIMEOUT_S)
        return StepResult({"passed": True})

    app.workflow("one", {"nodes": [{"id": "only", "type": "echo"}], "edges": []})
    app.workflow(
        "gated",
        {
            "start": "gate",
            "nodes": [
                {"id": "gate", "type": "gate_node"},
                {"id": "a", "type": "echo"},
                {"id": "b", "type": "echo"},
            ],
            "edges": [{"source": "gate", "target": "a"}, {"source": "a", "target": "b"}],
        },
    )
    return app


def resident_kb() -> int:
    """This process's resident set size, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def reply(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    # Writes past RLIMIT_FSIZE must fail with EFBIG (as a full disk would), not kill us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    path = argv[0]
    workers = int(argv[1]) if len(argv) > 1 else 2
    gate = threading.Event()
    entered: list[int] = []
    runtime = EmbeddedRuntime(
        build_host_app(gate, entered), path, workers=workers, synchronous="NORMAL"
    )
    runtime.start()
    server = LocalServer(HttpApi(runtime.service)).start()
    reply({"url": server.url, "pid": os.getpid()})
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                scheduler = runtime.scheduler
                reply(
                    {
                        "fds": len(os.listdir("/proc/self/fd")),
                        "rss_kb": resident_kb(),
                        "threads": threading.active_count(),
                        "delivered": scheduler.delivered,
                        "failures": scheduler.failures,
                        "entered": len(entered),
                        "connections": runtime.db.open_connections,
                    }
                )
            elif command == "open":
                gate.set()
                reply({"ok": True})
            elif command == "quit":
                break
            else:
                reply({"error": f"unknown command {command!r}"})
    finally:
        gate.set()
        server.stop()
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


class HostProcess:
    """Starts :func:`main` in a child process and talks to it (the test's side).

    Args:
        path: the database file.
        workers: the runtime's delivery threads.
        limits: ``resource`` limits to set in the child before it starts, as
            ``{resource.RLIMIT_NOFILE: (soft, hard)}``.
        timeout: seconds to wait for any one answer.
    """

    def __init__(
        self,
        path: Path,
        *,
        workers: int = 2,
        limits: dict[int, tuple[int, int]] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        wanted = dict(limits or {})

        def limit() -> None:
            for which, values in wanted.items():
                resource.setrlimit(which, values)

        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.sqlite_host", str(path), str(workers)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        hello = self._next_line()
        self.url: str = hello["url"]
        self.pid: int = hello["pid"]

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def _next_line(self) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise AssertionError(f"the host said nothing for {self.timeout} s") from None
        if line is None:
            raise AssertionError("the host exited:\n" + "".join(self.stderr[-40:]))
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, command: str) -> dict[str, Any]:
        """Send one command line; its JSON answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._next_line()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One HTTP request on a new connection (so a new server thread): status, JSON."""
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else None
        finally:
            connection.close()

    def close(self) -> None:
        """Ask the host to quit, and make sure it is gone."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(self.timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(self.timeout)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
