"""Clients of the run API: over HTTP, or in-process on a :class:`RunService`.

Both return the API's JSON views, so the CLI prints the same thing either way: the HTTP
client what the server sends, the local one the same response models
(:mod:`refluxo.api.models`) dumped by their wire names, without going through HTTP.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from refluxo.api.api_error import ApiError, ServerUnreachable
from refluxo.api.models import ErrorBody, ReconcileView, RunDetailView, RunPageView, RunView
from refluxo.model import SnapshotStatus
from refluxo.runtime.errors import RunError
from refluxo.runtime.service import RunService

__all__ = ["ApiError", "HttpClient", "LocalClient", "RunClient", "RunReader", "ServerUnreachable"]


def _view(model: BaseModel) -> dict[str, Any]:
    """A response model as the API sends it (by wire names, JSON values)."""
    return model.model_dump(mode="json", by_alias=True)


class RunReader(Protocol):
    """Shows runs: what commands that only read need (see :mod:`refluxo.api.stored_client`)."""

    def get(
        self, run_id: str, *, timeline_after: int = -1, timeline_limit: int = 100
    ) -> dict[str, Any]: ...


class RunClient(RunReader, Protocol):
    def start(
        self, workflow: str, input: Any = None, run_id: str | None = None
    ) -> dict[str, Any]: ...

    def list(self, status: str | None = None, limit: int = 50) -> dict[str, Any]: ...

    def resume(self, run_id: str, payload: Any = None) -> dict[str, Any]: ...

    def cancel(self, run_id: str, reason: str = "Cancelled") -> dict[str, Any]: ...

    def reconcile(
        self, *, grace_s: float | None = None, limit: int = 500, cursor: str | None = None
    ) -> dict[str, Any]: ...


MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The largest answer a client reads (a run's view with its timeline page is far smaller)."""


class HttpClient:
    """Calls a refluxo server.

    ``api_key`` is sent as ``X-API-Key``; ``id_token`` (an identity token, for a function
    behind Cloud Run IAM) as ``Authorization: Bearer``.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        id_token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.id_token = id_token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        import http.client  # here: the local client (the refluxo command) needs no HTTP
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("X-API-Key", self.api_key)
        if self.id_token:
            request.add_header("Authorization", f"Bearer {self.id_token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = self._body(response)
        except urllib.error.HTTPError as err:
            try:
                error = ErrorBody.model_validate_json(err.read()).error
            except ValidationError:  # not the API answering (a proxy, the platform)
                raise ApiError(err.code, "http_error", str(err)) from err
            raise ApiError(err.code, error.code, error.message) from err
        except urllib.error.URLError as err:
            raise ServerUnreachable(f"cannot reach {self.url}: {err.reason}") from err
        except (OSError, http.client.HTTPException) as err:  # timed out, dropped, not HTTP
            reason = str(err) or type(err).__name__
            raise ServerUnreachable(f"no answer from {self.url}: {reason}") from err
        try:
            return json.loads(body or b"null")
        except (ValueError, RecursionError) as err:
            raise ServerUnreachable(f"{self.url} answered with a body that is not JSON") from err

    def _body(self, response: Any) -> bytes:
        """The answer's body, read within ``timeout`` in all (each read alone would let a
        server sending a byte a second hold the caller for ever) and up to
        :data:`MAX_ANSWER_BYTES`."""
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(65_536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise ServerUnreachable(f"{self.url} answered with over {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise ServerUnreachable(
                    f"no answer from {self.url}: its body took over {self.timeout:g} s"
                )
        return b"".join(chunks)

    def _shaped(self, view: type[BaseModel], answer: Any) -> dict[str, Any]:
        """``answer`` if it is what the run API answers (``view``'s shape); a server that
        answers something else is told apart, not read into a traceback."""
        try:
            view.model_validate(answer)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            raise ServerUnreachable(
                f"{self.url} answered with JSON that is not the run API's answer "
                f"({where}: {first['msg']})"
            ) from None
        except RecursionError:
            raise ServerUnreachable(f"{self.url} answered with JSON nested too deep") from None
        shaped: dict[str, Any] = answer
        return shaped

    def start(self, workflow: str, input: Any = None, run_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"workflow": workflow, "input": input}
        if run_id:
            body["runId"] = run_id
        return self._shaped(RunView, self.request("POST", "/runs", body))

    def get(
        self, run_id: str, *, timeline_after: int = -1, timeline_limit: int = 100
    ) -> dict[str, Any]:
        query = urllib.parse.urlencode(
            {"timelineAfter": timeline_after, "timelineLimit": timeline_limit}
        )
        answer = self.request("GET", f"/runs/{urllib.parse.quote(run_id)}?{query}")
        return self._shaped(RunDetailView, answer)

    def list(self, status: str | None = None, limit: int = 50) -> dict[str, Any]:
        query = urllib.parse.urlencode({"limit": limit, **({"status": status} if status else {})})
        return self._shaped(RunPageView, self.request("GET", f"/runs?{query}"))

    def resume(self, run_id: str, payload: Any = None) -> dict[str, Any]:
        path = f"/runs/{urllib.parse.quote(run_id)}/resume"
        return self._shaped(RunView, self.request("POST", path, {"payload": payload}))

    def cancel(self, run_id: str, reason: str = "Cancelled") -> dict[str, Any]:
        path = f"/runs/{urllib.parse.quote(run_id)}/cancel"
        return self._shaped(RunView, self.request("POST", path, {"reason": reason}))

    def reconcile(
        self, *, grace_s: float | None = None, limit: int = 500, cursor: str | None = None
    ) -> dict[str, Any]:
        """``POST /tasks/reconcile``; without ``grace_s``, the server's grace period."""
        body: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            body["cursor"] = cursor
        if grace_s is not None:
            body["graceS"] = grace_s
        return self._shaped(ReconcileView, self.request("POST", "/tasks/reconcile", body))


class LocalClient:
    """The same calls, in-process on a service (the local database)."""

    def __init__(self, service: RunService) -> None:
        self.service = service

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return operation(*args, **kwargs)
        except RunError as err:
            raise ApiError.of(err) from err

    def start(self, workflow: str, input: Any = None, run_id: str | None = None) -> dict[str, Any]:
        started = self._call(self.service.start, workflow, input, run_id)
        return _view(RunView.of(started.record))

    def get(
        self, run_id: str, *, timeline_after: int = -1, timeline_limit: int = 100
    ) -> dict[str, Any]:
        record = self._call(self.service.get, run_id)
        timeline = self.service.timeline(run_id, after_seq=timeline_after, limit=timeline_limit)
        return _view(RunDetailView.of_run(record, timeline))

    def list(self, status: str | None = None, limit: int = 50) -> dict[str, Any]:
        page = self.service.list(SnapshotStatus(status) if status else None, limit)
        runs = [RunView.of(record) for record in page.runs]
        return _view(RunPageView(runs=runs, next_cursor=page.next_cursor))

    def resume(self, run_id: str, payload: Any = None) -> dict[str, Any]:
        return _view(RunView.of(self._call(self.service.resume, run_id, payload)))

    def cancel(self, run_id: str, reason: str = "Cancelled") -> dict[str, Any]:
        return _view(RunView.of(self._call(self.service.cancel, run_id, reason)))

    def reconcile(
        self, *, grace_s: float | None = None, limit: int = 500, cursor: str | None = None
    ) -> dict[str, Any]:
        """Without ``grace_s``, the service's grace period."""
        grace_ms = self.service.reconcile_grace_ms if grace_s is None else round(grace_s * 1000)
        report = self._call(self.service.reconcile, grace_ms=grace_ms, limit=limit, cursor=cursor)
        return _view(
            ReconcileView(
                examined=report.examined,
                rescheduled=report.rescheduled,
                next_cursor=report.next_cursor,
            )
        )
