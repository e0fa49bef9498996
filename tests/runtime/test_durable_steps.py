"""What a durable step promises beyond commit-once: real awaiting, transient failures
redelivered, hooks, one idempotency key per visit, batches that keep executed work,
failures that say why, and bounded timers."""

from __future__ import annotations

import asyncio
import contextvars
import decimal
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refluxo import Plugin, RetryPolicy, Snapshot, StepResult
from refluxo.errors import TransientError
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.host.settings import DEFAULT_WORKERS
from refluxo.runtime import App, Dispatcher, Outcome, RunService, StepBudget, current_step
from refluxo.runtime.ids import idempotency_key
from refluxo.runtime.ports import Delivery, HistoryReader, RunRecord, SnapshotStore
from tests.engine.ts_core import load as load_ts_core
from tests.support.clock import FakeClock
from tests.support.stores import assert_history_consistent, history_of
from tests.support.waiting import wait_until


def chain(*nodes: tuple[str, str, Any]) -> dict[str, Any]:
    """A straight workflow of (id, type, data) nodes."""
    return {
        "nodes": [{"id": i, "type": t, "data": d} for i, t, d in nodes],
        "edges": [{"source": a[0], "target": b[0]} for a, b in itertools.pairwise(nodes)],
    }


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Any]:
    made: list[EmbeddedRuntime] = []

    def make(app: App, **options: Any) -> EmbeddedRuntime:
        options.setdefault("workers", 0)
        runtime = EmbeddedRuntime(app, tmp_path / f"db{len(made)}.db", synchronous="OFF", **options)
        made.append(runtime)
        return runtime.start()

    yield make
    for runtime in made:
        runtime.stop()


# -- executors on a real event loop ------------------------------------------------------------


def awaiting_app(clock: FakeClock | None = None) -> App:
    app = App(clock=clock) if clock else App()

    @app.node()
    async def sleepy(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        doubled = await loop.run_in_executor(None, lambda: data["n"] * 2)
        both = await asyncio.gather(asyncio.sleep(0.01, "a"), asyncio.sleep(0.01, "b"))
        return StepResult({"doubled": doubled, "both": both})

    app.workflow("await", chain(("a", "sleepy", {"n": 21}), ("b", "sleepy", {"n": 1})))
    return app


def test_async_executors_really_await_when_delivered_by_drain(make_runtime: Any) -> None:
    runtime = make_runtime(awaiting_app())
    run = runtime.service.start("await").record
    assert runtime.scheduler.drain() == 2
    record = runtime.service.get(run.run_id)
    assert record.status == "completed"
    outputs = [r.output for r in history_of(runtime.store, run.run_id).all("a")]
    assert outputs == [{"doubled": 42, "both": ["a", "b"]}]


def test_async_executors_really_await_on_background_workers(make_runtime: Any) -> None:
    runtime = make_runtime(awaiting_app(), workers=2)
    runs = [runtime.service.start("await").record.run_id for _ in range(4)]
    wait_until(
        lambda: all(runtime.service.get(r).status == "completed" for r in runs),
        20,
        "the awaiting runs to complete",
    )


def test_every_async_executor_awaits_on_the_runtime_s_one_loop(make_runtime: Any) -> None:
    """Steps are driven by the delivering thread, but what awaits runs on the one loop of
    the runtime, so an async client made in one run's step serves every later run; and both
    kinds of executor see the step they run in."""
    app = App()
    seen: dict[str, Any] = {"loops": set(), "threads": set(), "steps": []}
    shared: dict[str, asyncio.Lock] = {}

    @app.node()
    async def uses_client(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        lock = shared.setdefault("client", asyncio.Lock())  # bound to the first loop used
        async with lock:
            await asyncio.sleep(0)
        seen["loops"].add(asyncio.get_running_loop())
        seen["threads"].add(threading.current_thread().name)
        seen["steps"].append((current_step().run_id, current_step().node_id))
        return StepResult("ok")

    @app.node()
    def plain(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        seen["steps"].append((current_step().run_id, current_step().node_id))
        return StepResult("ok")

    app.workflow("client", chain(("a", "uses_client", {}), ("b", "plain", {})))
    runtime = make_runtime(app, workers=4)
    runs = [runtime.service.start("client").record.run_id for _ in range(6)]
    wait_until(
        lambda: all(runtime.service.get(r).status == "completed" for r in runs), 20, "the runs"
    )
    assert len(seen["loops"]) == 1
    assert seen["threads"] == {"refluxo-loop"}
    assert sorted(seen["steps"]) == sorted((r, n) for r in runs for n in ("a", "b"))


def test_a_blocking_sync_executor_does_not_hold_up_other_runs(make_runtime: Any) -> None:
    gate = threading.Event()
    app = App()

    @app.node()
    def blocker(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        assert gate.wait(20), "never released"
        return StepResult("released")

    @app.node()
    async def quick(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        await asyncio.sleep(0)
        return StepResult("quick")

    app.workflow("block", chain(("b", "blocker", {})))
    app.workflow("quick", chain(("q", "quick", {})))
    runtime = make_runtime(app, workers=2)
    blocked = runtime.service.start("block").record.run_id
    fast = runtime.service.start("quick").record.run_id
    # The quick run completes while the blocking executor still holds its thread.
    wait_until(lambda: runtime.service.get(fast).status == "completed", 20, "the quick run")
    assert runtime.service.get(blocked).status == "active"
    gate.set()
    wait_until(lambda: runtime.service.get(blocked).status == "completed", 20, "the blocked run")


# -- transient failures are redelivered, never node errors ---------------------------------------


class FlakyHistory:
    """A history reader that fails transiently while ``failing`` is set."""

    def __init__(self, inner: HistoryReader, failing: threading.Event) -> None:
        self.inner = inner
        self.failing = failing

    def _check(self) -> None:
        if self.failing.is_set():
            raise TransientError("store briefly unavailable")

    def count(self, node_id: str) -> int:
        return self.inner.count(node_id)

    def get(self, node_id: str, index: int) -> Any:
        self._check()
        return self.inner.get(node_id, index)

    def all(self, node_id: str) -> list[Any]:
        self._check()
        return self.inner.all(node_id)

    def node_ids(self) -> list[str]:
        return self.inner.node_ids()


class FlakyStore:
    """Wraps a store: its history readers fail while ``failing`` is set."""

    def __init__(self, inner: SnapshotStore) -> None:
        self.inner = inner
        self.failing = threading.Event()

    def history(self, record: RunRecord) -> HistoryReader:
        return FlakyHistory(self.inner.history(record), self.failing)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_transient_history_failure_inside_an_expression_is_redelivered(
    make_runtime: Any,
) -> None:
    app = App()

    @app.node()
    def produce(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"x": 7})

    @app.node()
    def use(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    app.workflow("expr", chain(("a", "produce", {}), ("b", "use", {"v": "{{ nodes.a.output.x }}"})))
    runtime = make_runtime(app)
    flaky = FlakyStore(runtime.store)
    service = RunService(Dispatcher(app, flaky, runtime.scheduler))
    run = service.start("expr").record
    assert service.deliver(Delivery(run.run_id, 0)).outcome == Outcome.COMMITTED
    before = service.get(run.run_id)

    flaky.failing.set()
    for _ in range(3):
        with pytest.raises(TransientError):
            service.deliver(Delivery(run.run_id, before.version))
    after = service.get(run.run_id)
    assert (after.version, after.status, after.result_count) == (
        before.version,
        before.status,
        before.result_count,
    )

    flaky.failing.clear()
    assert service.deliver(Delivery(run.run_id, before.version)).outcome == Outcome.COMMITTED
    done = service.get(run.run_id)
    assert done.status == "completed"
    assert [r.output for r in history_of(runtime.store, run.run_id).all("b")] == [{"v": 7}]
    service.close()


def test_the_local_scheduler_retries_a_transient_failure_until_it_passes(
    make_runtime: Any,
) -> None:
    app = App()
    attempts: list[int] = []

    @app.node()
    def touchy(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        attempts.append(current_step().attempt)
        if len(attempts) < 3:
            raise TransientError("the database is busy")
        return StepResult("done")

    app.workflow("touchy", chain(("t", "touchy", {})))
    runtime = make_runtime(app, workers=1)
    run = runtime.service.start("touchy").record
    wait_until(lambda: runtime.service.get(run.run_id).status == "completed", 20, "completion")
    # Never a node error: no error result, and every try was attempt 1 of the same visit.
    assert attempts == [1, 1, 1]
    results = history_of(runtime.store, run.run_id).all("t")
    assert [(r.output, r.error) for r in results] == [("done", None)]


# -- workflow hooks fire in the durable runtime ----------------------------------------------------


class Recorder(Plugin):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_workflow_start(self, snapshot: Snapshot) -> None:
        self.calls.append(("start", snapshot.workflow_id))

    def on_workflow_pause(self, snapshot: Snapshot) -> None:
        self.calls.append(("pause", snapshot.workflow_id))

    def on_workflow_complete(self, snapshot: Snapshot) -> None:
        self.calls.append(("complete", snapshot.workflow_id))


def test_workflow_hooks_fire_once_each_in_the_durable_runtime(make_runtime: Any) -> None:
    recorder = Recorder()
    app = App(plugins=[recorder])

    @app.node()
    def ask(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(payload) if payload is not None else StepResult(pause=True)

    app.workflow("twice", chain(("one", "ask", {}), ("two", "ask", {})))
    runtime = make_runtime(app)
    run_id = runtime.service.start("twice", None, run_id="hooked").record.run_id
    runtime.scheduler.drain()
    runtime.service.resume(run_id, {"ok": 1})
    runtime.scheduler.drain()
    runtime.service.resume(run_id, {"ok": 2})
    runtime.scheduler.drain()
    assert runtime.service.get(run_id).status == "completed"
    assert recorder.calls == [
        ("start", "hooked"),
        ("pause", "hooked"),
        ("pause", "hooked"),
        ("complete", "hooked"),
    ]


# -- one idempotency key per visit --------------------------------------------------------------


class PaymentService:
    """A payment API that deduplicates by idempotency key, and can lose its replies."""

    def __init__(self) -> None:
        self.charges: dict[str, int] = {}
        self.keys_seen: list[str] = []
        self.lose_replies = 0

    def charge(self, amount: int, key: str) -> str:
        self.keys_seen.append(key)
        self.charges.setdefault(key, amount)
        if self.lose_replies:
            self.lose_replies -= 1
            raise TimeoutError("the reply was lost")
        return f"receipt-{key}"


def payment_app(payments: PaymentService, clock: FakeClock) -> App:
    app = App(clock=clock)

    @app.node(retry_policy=RetryPolicy(max_attempts=5, interval=1000))
    def charge(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(payments.charge(data["amount"], current_step().idempotency_key))

    @app.node()
    def again(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        paid = sum(1 for result in context["pay"] if result.error is None)
        return StepResult(None, next_handle="loop" if paid < 2 else "done")

    @app.node()
    def end(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult("end")

    app.workflow(
        "pay",
        {
            "nodes": [
                {"id": "pay", "type": "charge", "data": {"amount": 5}},
                {"id": "again", "type": "again"},
                {"id": "end", "type": "end"},
            ],
            "edges": [
                {"source": "pay", "target": "again"},
                {"source": "again", "target": "pay", "sourceHandle": "loop"},
                {"source": "again", "target": "end", "sourceHandle": "done"},
            ],
        },
    )
    return app


def test_a_lost_reply_retried_charges_once_per_visit(make_runtime: Any, clock: FakeClock) -> None:
    payments = PaymentService()
    payments.lose_replies = 2
    runtime = make_runtime(payment_app(payments, clock))
    run = runtime.service.start("pay").record
    for _ in range(10):
        runtime.scheduler.drain()
        clock.advance(1000)
    record = runtime.service.get(run.run_id)
    assert record.status == "completed"
    # Visit 1: three attempts (two replies lost), one key; visit 2 (the loop): a new key.
    first, second = idempotency_key(run.run_id, "pay", 0), idempotency_key(run.run_id, "pay", 3)
    assert payments.keys_seen == [first, first, first, second]
    assert payments.charges == {first: 5, second: 5}
    attempts = [r.attempt for r in history_of(runtime.store, run.run_id).all("pay")]
    assert attempts == [1, 2, 3, 1]


def test_a_crash_before_the_commit_reuses_the_key(make_runtime: Any, clock: FakeClock) -> None:
    payments = PaymentService()
    runtime = make_runtime(payment_app(payments, clock))
    run = runtime.service.start("pay").record
    first = runtime.service.deliver(Delivery(run.run_id, 0))
    assert first.outcome == Outcome.COMMITTED
    # Two dispatchers run the same delivery (one of them "crashes" before committing: its
    # commit loses); the service is charged with the same key both times.
    twin = RunService(Dispatcher(runtime.app, runtime.store, runtime.scheduler))
    version = runtime.service.get(run.run_id).version
    one = runtime.service.deliver(Delivery(run.run_id, version))
    two = twin.deliver(Delivery(run.run_id, version))
    assert {one.outcome, two.outcome} == {Outcome.COMMITTED, Outcome.STALE}
    twin.close()
    assert len(set(payments.keys_seen)) == 1


# -- batches never lose executed work -------------------------------------------------------------


def test_an_unstorable_output_mid_batch_keeps_the_steps_before_it(make_runtime: Any) -> None:
    app = App()
    executed: list[str] = []

    @app.node()
    def out(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        executed.append(data["tag"])
        return StepResult("x" * data["size"])

    app.workflow(
        "batch",
        chain(
            ("s1", "out", {"tag": "s1", "size": 10}),
            ("s2", "out", {"tag": "s2", "size": 10}),
            ("huge", "out", {"tag": "huge", "size": 400_000}),
            ("s4", "out", {"tag": "s4", "size": 10}),
        ),
    )
    runtime = make_runtime(app, budget=StepBudget(max_steps=10))
    run = runtime.service.start("batch").record
    runtime.scheduler.drain()
    record = runtime.service.get(run.run_id)
    assert record.status == "failed"
    assert executed == ["s1", "s2", "huge"]
    assert assert_history_consistent(runtime.store, run.run_id) == ["s1", "s2"]
    reason = record.snapshot.metadata["failedReason"]
    assert "'huge'" in reason
    assert "limit" in reason
    assert record.snapshot.current_node_id == "huge"


def test_a_batch_ends_where_a_node_cannot_run_and_keeps_what_ran(make_runtime: Any) -> None:
    app = App()

    @app.node()
    def ok(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    app.add_node_type("retired", ok)
    app.workflow("w", chain(("a", "ok", {}), ("b", "ok", {}), ("c", "retired", {})))
    runtime = make_runtime(app, budget=StepBudget(max_steps=10))
    run = runtime.service.start("w").record
    del app.node_types["retired"]  # a deployment without the node type the run needs
    app.add_node_type("unrelated", ok)  # (re-registering clears the engines built so far)
    runtime.scheduler.drain()
    record = runtime.service.get(run.run_id)
    assert record.status == "failed"
    assert assert_history_consistent(runtime.store, run.run_id) == ["a", "b"]
    assert "retired" in record.snapshot.metadata["failedReason"]
    assert record.snapshot.current_node_id == "c"


# -- failures say why ---------------------------------------------------------------------------


def test_exhausted_retries_record_the_node_and_its_last_error(
    make_runtime: Any, clock: FakeClock
) -> None:
    app = App(clock=clock)

    @app.node(retry_policy={"maxAttempts": 2, "interval": 10})
    def broken(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError(f"card declined (attempt {current_step().attempt})")

    app.workflow("broken", chain(("charge", "broken", {})))
    runtime = make_runtime(app)
    run = runtime.service.start("broken").record
    for _ in range(5):
        runtime.scheduler.drain()
        clock.advance(10)
    record = runtime.service.get(run.run_id)
    assert record.status == "failed"
    metadata = record.snapshot.metadata
    assert metadata["failedReason"] == (
        "node 'charge' failed after 3 attempts: ValueError: card declined (attempt 3)"
    )
    assert "pausedReason" not in metadata


def test_a_missing_definition_fails_the_run_with_the_reason(make_runtime: Any) -> None:
    app = App()

    @app.node()
    def ok(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    app.workflow("w", chain(("a", "ok", {})))
    runtime = make_runtime(app)
    run = runtime.service.start("w").record
    with runtime.db.write() as connection:
        connection.execute("DELETE FROM definitions")
    runtime.app._engines.clear()
    runtime.scheduler.drain()
    record = runtime.service.get(run.run_id)
    assert record.status == "failed"
    assert "missing" in record.snapshot.metadata["failedReason"]


def test_a_cancelled_run_says_so(make_runtime: Any) -> None:
    app = App()

    @app.node()
    def ask(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(pause=True)

    app.workflow("w", chain(("a", "ask", {})))
    runtime = make_runtime(app)
    run = runtime.service.start("w").record
    runtime.scheduler.drain()
    runtime.service.cancel(run.run_id)
    metadata = runtime.service.get(run.run_id).snapshot.metadata
    assert metadata["failedReason"] == "Cancelled"
    assert isinstance(metadata["cancelledAt"], int)


# -- bounded timers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [{"seconds": 1e16}, {"days": 1e300}, {"until": 1e30}, {"until": "9999-01-01T00:00:00Z"}],
    ids=["1e16s", "1e300days", "until-far", "until-year-9999"],
)
def test_an_out_of_range_timer_fails_the_node_and_stalls_nothing(
    make_runtime: Any, data: dict[str, Any]
) -> None:
    app = App()

    @app.node()
    def ok(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult("ok")

    app.workflow("far", chain(("w", "wait", data)))
    app.workflow("near", chain(("a", "ok", {})))
    runtime = make_runtime(app)
    far = runtime.service.start("far").record
    near = runtime.service.start("near").record
    runtime.scheduler.drain()
    record = runtime.service.get(far.run_id)
    assert record.status == "failed"
    assert "out of range" in record.snapshot.metadata["failedReason"]
    assert runtime.service.get(near.run_id).status == "completed"
    assert runtime.scheduler.pending() == []


def test_an_executor_resume_at_beyond_the_maximum_fails_clearly(make_runtime: Any) -> None:
    app = App()

    @app.node()
    def later(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        at: Any = float(data["at"])
        return StepResult(pause=True, resume_at=at)

    app.workflow("inf", chain(("a", "later", {"at": "inf"})))
    runtime = make_runtime(app)
    run = runtime.service.start("inf").record
    runtime.scheduler.drain()
    record = runtime.service.get(run.run_id)
    assert record.status == "failed"
    assert "resume_at" in record.snapshot.metadata["failedReason"]


def test_a_retry_delay_out_of_range_fails_the_node_instead_of_waiting(
    make_runtime: Any,
) -> None:
    from refluxo import ErrorHandler

    class Forever(ErrorHandler):
        def should_retry(
            self, error: BaseException, attempt: int, node: Any, definition: Any
        ) -> bool:
            return True

        def get_retry_delay(self, attempt: int, node: Any, definition: Any) -> float:
            return float("inf")

    app = App(error_handler=Forever())

    @app.node()
    def boom(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise RuntimeError("boom")

    app.workflow("w", chain(("a", "boom", {})))
    runtime = make_runtime(app)
    run = runtime.service.start("w").record
    runtime.scheduler.drain()
    record = runtime.service.get(run.run_id)
    assert record.status == "failed"
    assert "retry delay" in record.snapshot.metadata["failedReason"]


def test_keys_of_different_runs_never_collide() -> None:
    # "a:b" visiting "c" and "a" visiting "b:c" would read alike if the key were joined text.
    assert idempotency_key("a:b", "c", 0) != idempotency_key("a", "b:c", 0)
    assert len(idempotency_key("a", "b", 0)) == 32


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_output_fails_the_run_instead_of_becoming_null(
    make_runtime: Any, value: float
) -> None:
    app = App()

    @app.node()
    def compute(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"ratio": value, "label": "NaN is fine as text"})

    app.workflow("w", chain(("a", "compute", {})))
    runtime = make_runtime(app)
    run = runtime.service.start("w").record
    runtime.scheduler.drain()
    record = runtime.service.get(run.run_id)
    assert record.status == "failed"
    assert f"holds the number {value!r} (at ratio)" in record.snapshot.metadata["failedReason"]


@pytest.mark.parametrize(
    "resume_at", [-1e300, -(10**30), 1e300], ids=["minus-1e300", "minus-10e30", "1e300"]
)
def test_a_timer_far_in_the_past_or_future_fails_and_other_runs_go_on(
    make_runtime: Any, resume_at: float
) -> None:
    app = App()

    @app.node()
    def later(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(pause=True, resume_at=resume_at)  # type: ignore[arg-type]

    @app.node()
    def ok(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult("ok")

    app.workflow("bad", chain(("a", "later", {})))
    app.workflow("good", chain(("a", "ok", {})))
    runtime = make_runtime(app, workers=4)
    bad = [runtime.service.start("bad").record.run_id for _ in range(5)]
    good = [runtime.service.start("good").record.run_id for _ in range(30)]
    wait_until(
        lambda: all(runtime.service.get(r).status.is_terminal for r in bad + good),
        20,
        "every run to end",
    )
    assert {runtime.service.get(r).status for r in good} == {"completed"}
    for run_id in bad:
        reason = runtime.service.get(run_id).snapshot.metadata["failedReason"]
        assert "resume_at" in reason
        assert "out of range" in reason
    for run_id in good:  # each ran its node once
        assert len(history_of(runtime.store, run_id).all("a")) == 1


def test_waiting_steps_overlap_on_the_default_workers(make_runtime: Any) -> None:
    """Eight runs each waiting on a gate: all eight are in their step at once."""
    inside = threading.Semaphore(0)
    gate = threading.Event()
    app = App()

    @app.node()
    async def waits(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        inside.release()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 20)
        return StepResult("done")

    @app.node()
    def blocks(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        inside.release()
        assert gate.wait(20)
        return StepResult("done")

    app.workflow("async", chain(("a", "waits", {})))
    app.workflow("sync", chain(("a", "blocks", {})))
    runtime = make_runtime(app, workers=DEFAULT_WORKERS)
    runs = [runtime.service.start("async" if i % 2 else "sync").record.run_id for i in range(8)]
    for _ in runs:  # every one of them entered its step before any was released
        assert inside.acquire(timeout=20)
    gate.set()
    wait_until(
        lambda: all(runtime.service.get(r).status == "completed" for r in runs), 20, "the runs"
    )


def test_a_stored_run_lists_its_nodes_in_javascript_order(make_runtime: Any) -> None:
    """The durable runtime's context (read from the store, one step per delivery) iterates
    as the engine's does, and as TypeScript's ``Object.keys``: integer-like ids first."""
    order = load_ts_core("key_order.json")
    seen: list[list[str]] = []
    app = App()

    @app.node()
    def echo(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        seen.append(list(context))
        return StepResult(data)

    app.workflow("order", order["workflow"])
    runtime = make_runtime(app)
    run_id = runtime.service.start("order").record.run_id
    runtime.scheduler.drain()
    assert runtime.service.get(run_id).status == "completed"
    assert seen[-1] == order["objectKeys"][:-1]  # every node but the last had run
    history = history_of(runtime.store, run_id)
    assert sorted(history.node_ids()) == sorted(order["objectKeys"])


TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)


def test_what_a_step_sets_in_context_variables_stays_in_the_step(make_runtime: Any) -> None:
    """A def executor binding a context variable (a tenant, decimal's precision) leaves
    neither the next step the thread drives nor the caller with it."""
    seen: list[tuple[str | None, int]] = []
    app = App()

    @app.node()
    def binds(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        seen.append((TENANT.get(), decimal.getcontext().prec))
        TENANT.set(data["tenant"])
        decimal.getcontext().prec = 3
        return StepResult("bound")

    app.workflow("bind", chain(("a", "binds", {"tenant": "acme"})))
    runtime = make_runtime(app)
    for _ in range(3):
        runtime.service.start("bind")
    assert runtime.scheduler.drain() == 3
    assert seen == [(None, 28)] * 3
    assert TENANT.get() is None
    assert decimal.getcontext().prec == 28


def test_steps_drained_from_async_code_may_run_their_own_loop(make_runtime: Any) -> None:
    """drain() called where an event loop runs (an async test, a notebook): a def executor
    that runs a loop itself (asyncio.run) works as it does on a worker thread."""
    app = App()

    @app.node()
    def runs_a_loop(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(asyncio.run(asyncio.sleep(0, "ran")))

    app.workflow("loop", chain(("a", "runs_a_loop", {})))
    runtime = make_runtime(app)
    run_id = runtime.service.start("loop").record.run_id

    async def drain_from_async_code() -> int:
        return int(runtime.scheduler.drain())

    assert asyncio.run(drain_from_async_code()) == 1
    assert runtime.service.get(run_id).status == "completed"
    assert [r.output for r in history_of(runtime.store, run_id).all("a")] == ["ran"]


def test_sys_exit_in_a_node_fails_the_node_not_the_runtime(make_runtime: Any) -> None:
    """SystemExit from a def or an async executor is the node's error: the worker threads
    and the shared event loop go on delivering every other run."""
    app = App()

    @app.node()
    def exits(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise SystemExit(3)

    @app.node()
    async def exits_async(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        await asyncio.sleep(0)
        raise SystemExit("bye")

    @app.node()
    async def fine(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        await asyncio.sleep(0)
        return StepResult("fine")

    app.workflow("exits", chain(("a", "exits", {})))
    app.workflow("exits_async", chain(("a", "exits_async", {})))
    app.workflow("fine", chain(("a", "fine", {})))
    runtime = make_runtime(app, workers=2)
    failing = [runtime.service.start(name).record.run_id for name in ("exits", "exits_async")]
    wait_until(
        lambda: all(runtime.service.get(r).status == "failed" for r in failing), 20, "the exits"
    )
    reasons = [runtime.service.get(r).snapshot.metadata["failedReason"] for r in failing]
    assert "SystemExit(3)" in reasons[0]
    assert "SystemExit('bye')" in reasons[1]
    later = runtime.service.start("fine").record.run_id
    wait_until(lambda: runtime.service.get(later).status == "completed", 20, "the fine run")


def test_stop_cancels_a_step_still_awaiting_and_a_new_runtime_delivers_it(
    tmp_path: Path,
) -> None:
    """A step awaiting forever does not keep stop() waiting on its worker: after the loop's
    grace period it is cancelled, its worker ends, and its delivery is still pending for the
    next runtime on the file."""
    entered = threading.Event()
    app = App()

    @app.node()
    async def waits(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if not entered.is_set():  # the first delivery awaits what never comes
            entered.set()
            await asyncio.Event().wait()
        return StepResult("done")

    app.workflow("waits", chain(("a", "waits", {})))
    path = tmp_path / "stop.db"
    runtime = EmbeddedRuntime(app, path, workers=2, synchronous="OFF").start()
    run_id = runtime.service.start("waits").record.run_id
    assert entered.wait(20)
    before = {t.name for t in threading.enumerate() if t.name.startswith("refluxo-worker")}
    assert before
    runtime.stop()
    after = {t.name for t in threading.enumerate() if t.name.startswith("refluxo-worker")}
    assert after == set()
    again = EmbeddedRuntime(app, path, workers=1, synchronous="OFF").start()
    try:  # delivered again once its retry backoff has passed
        wait_until(lambda: again.service.get(run_id).status == "completed", 20, "the run")
    finally:
        again.stop()
