"""What a node's code may do wrong, and how each fails the node (never the caller).

An output JSON cannot hold, a handle that is not a string, ``sys.exit()`` in a hook, a
``CancelledError`` of something the node awaited, any other ``BaseException``: each is a
node error with a message that says what, while a cancellation of the step itself still
ends the step as asyncio means it to.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import datetime
import decimal
import enum
import types
from typing import Any

import pytest
from pydantic import BaseModel

from refluxo import (
    DefaultErrorHandler,
    NodeDefinition,
    Plugin,
    RedactionPlugin,
    RetryPolicy,
    Snapshot,
    StepResult,
    WorkflowEngine,
)
from refluxo.expressions import JexlTransformEngine
from refluxo.frozen import freeze, thaw
from refluxo.model import MAX_OUTPUT_DEPTH
from refluxo.steps import MAX_ERROR_TEXT
from tests.support.engine import chain

SECRET = "sk_live_9f8e7d6c5b4a"


def engine_returning(value: Any, **options: Any) -> WorkflowEngine:
    return WorkflowEngine(chain("a"), {"echo": NodeDefinition(lambda d, c, p, g: value)}, **options)


async def failed_reason(engine: WorkflowEngine, **options: Any) -> str:
    final = await engine.execute(initial_node_id="a", **options)
    assert final.status == "failed"
    return str(final.metadata["failedReason"])


@pytest.mark.parametrize(
    ("output", "told"),
    [
        ({"y": object()}, "a value of type 'object' (at y)"),
        ({"f": [1, len]}, "a value of type 'builtin_function_or_method' (at f[1])"),
        ({"raw": b"\xff\xfe"}, "a value of type 'bytes' (at raw)"),
        ({"k": {1: "x"}}, "a key 1 that is not a string (at k)"),
        ({"r": [1.5, float("nan")]}, "the number nan (at r[1])"),
        ({"r": float("-inf")}, "the number -inf (at r)"),
    ],
)
async def test_an_output_with_no_json_form_fails_the_node_saying_what_and_where(
    output: Any, told: str
) -> None:
    reason = await failed_reason(engine_returning(StepResult(output)))
    assert f"TypeError: the output holds {told}, which has no JSON form" in reason


class Point(BaseModel):
    x: int
    when: datetime.date


@dataclasses.dataclass
class Box:
    items: frozenset[int]


class Colour(enum.Enum):
    RED = "red"


class KeyedModel(BaseModel):
    d: dict[Any, str]


@dataclasses.dataclass
class KeyedBox:
    d: dict[Any, str]


class Level(enum.IntEnum):
    HIGH = 2


class Tone(enum.StrEnum):
    LOUD = "loud"


@pytest.mark.parametrize(
    ("output", "held"),
    [
        ({"s": {3}}, {"s": [3]}),
        ({"d": datetime.date(2020, 1, 2)}, {"d": "2020-01-02"}),
        ({"n": decimal.Decimal("1.5")}, {"n": "1.5"}),
        ({"b": b"text"}, {"b": "text"}),
        ({"p": Point(x=1, when=datetime.date(2020, 1, 2))}, {"p": {"x": 1, "when": "2020-01-02"}}),
        ([Box(frozenset({2}))], [{"items": [2]}]),
        ({"c": Colour.RED}, {"c": "red"}),
        ({"c": Level.HIGH, "s": Tone.LOUD}, {"c": 2, "s": "loud"}),
        ({"t": (1, (2, "x"))}, {"t": [1, [2, "x"]]}),
        (Point(x=2, when=datetime.date(2021, 3, 4)), {"x": 2, "when": "2021-03-04"}),
    ],
)
async def test_an_output_with_a_json_form_is_held_in_it_before_and_after_a_save(
    output: Any, held: Any
) -> None:
    """Held as the snapshot writes it: the run's expressions read what a snapshot written
    and read back holds, so a saved and resumed run ends as an uninterrupted one."""
    final = await engine_returning(StepResult(output)).execute(initial_node_id="a")
    assert final.status == "completed"
    assert final.context["a"][0].output == held
    assert Snapshot.from_json(final.to_json()).context["a"][0].output == held


async def test_json_outputs_of_every_shape_are_kept_and_read_back_the_same() -> None:
    output = {"list": [1, 2.5, None, True, "é"], "tuple": (1, "x"), "nested": {"a": {"b": []}}}
    final = await engine_returning(StepResult(output)).execute(initial_node_id="a")
    assert final.status == "completed"
    held = {**output, "tuple": [1, "x"]}  # a tuple reads back as a list: held as one
    assert final.context["a"][0].output == held
    assert Snapshot.from_json(final.to_json()).context["a"][0].output == held


async def test_an_output_is_held_read_only_so_no_later_node_can_rewrite_the_history() -> None:
    workflow = {
        "nodes": [
            {"id": "a", "type": "src"},
            {"id": "b", "type": "meddle"},
            {"id": "c", "type": "read"},
        ],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    }

    def meddle(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        context["a"][-1].output["lst"].append(2)  # refused: it is a's recorded output
        return StepResult({})

    def read(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"seen": thaw(context["a"][-1].output["lst"])})

    engine = WorkflowEngine(
        workflow,
        {
            "src": NodeDefinition(lambda d, c, p, g: StepResult({"lst": [1]})),
            "meddle": NodeDefinition(meddle),
            "read": NodeDefinition(read),
        },
    )
    final = await engine.execute(initial_node_id="a")
    assert final.status == "failed"
    assert "recorded outputs are read-only" in final.metadata["failedReason"]
    assert final.context["a"][0].output == {"lst": [1]}


async def test_any_mapping_is_held_as_a_plain_dict() -> None:
    counts: collections.defaultdict[str, list[int]] = collections.defaultdict(list)
    counts["seen"].append(1)
    output = {
        "dd": counts,
        "od": collections.OrderedDict(b=1, a=2),
        "proxy": types.MappingProxyType({"x": 1}),
        Tone.LOUD: "enum key",
    }
    final = await engine_returning(StepResult(output)).execute(initial_node_id="a")
    held = final.context["a"][0].output
    expected = {
        "dd": {"seen": [1]},
        "od": {"b": 1, "a": 2},
        "proxy": {"x": 1},
        "loud": "enum key",
    }
    assert held == expected
    assert type(held["dd"]) is not collections.defaultdict
    assert "missing" not in held["dd"]
    assert Snapshot.from_json(final.to_json()).context["a"][0].output == expected


@pytest.mark.parametrize(
    "output",
    [
        {"m": KeyedModel(d={1: "a", "1": "b"})},
        {"d": KeyedBox({1: "a"})},
    ],
    ids=["model-int-key", "dataclass-int-key"],
)
async def test_keys_that_json_cannot_tell_apart_fail_the_node(output: Any) -> None:
    reason = await failed_reason(engine_returning(StepResult(output)))
    assert "which has no JSON form" in reason


async def test_what_an_output_holds_reads_the_same_before_and_after_a_save() -> None:
    """A date in an output used to read as undefined in this run's expressions and as text
    once the snapshot was saved and read back: a resumed run could end otherwise."""
    workflow = {
        "nodes": [
            {"id": "a", "type": "src"},
            {"id": "b", "type": "echo", "data": {"d": "{{ nodes.a.output.d }}"}},
        ],
        "edges": [{"source": "a", "target": "b"}],
    }
    engine = WorkflowEngine(
        workflow,
        {
            "src": NodeDefinition(lambda d, c, p, g: StepResult({"d": datetime.date(2020, 1, 2)})),
            "echo": NodeDefinition(lambda d, c, p, g: StepResult(dict(d))),
        },
        transform_engines=[JexlTransformEngine()],
    )
    whole = await engine.execute(initial_node_id="a")
    first = await engine.execute_step(engine.create_initial_snapshot("w", "a"))
    resumed = await engine.execute(snapshot=Snapshot.from_json(first.to_json()))
    assert whole.context["b"][0].output == {"d": "2020-01-02"}
    assert resumed.context["b"][0].output == whole.context["b"][0].output


@pytest.mark.parametrize("handle", [1, ["1"], {"h": 1}, 1.5])
async def test_a_step_result_handle_that_is_not_a_string_fails_the_node(handle: Any) -> None:
    reason = await failed_reason(engine_returning(StepResult("out", next_handle=handle)))
    assert f"nextHandle must be a string, got {type(handle).__name__}" in reason


async def test_an_error_handler_that_raises_has_its_text_masked_too() -> None:
    def charge(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError("auth failed for key " + globals["stripe"])

    class Classifier(DefaultErrorHandler):
        def should_retry(
            self, error: BaseException, attempt: int, node: Any, definition: Any
        ) -> bool:
            raise RuntimeError(f"cannot classify {error}")

    engine = WorkflowEngine(
        chain("a"),
        {"echo": NodeDefinition(charge)},
        plugins=[RedactionPlugin()],
        error_handler=Classifier(),
    )
    final = await engine.execute(initial_node_id="a", globals={"stripe": SECRET})
    assert (
        "its error handler raised RuntimeError: cannot classify" in final.metadata["failedReason"]
    )
    assert SECRET.encode() not in final.to_json()


async def test_a_retry_delay_that_is_not_a_number_has_its_text_masked() -> None:
    class Delayer(DefaultErrorHandler):
        def should_retry(
            self, error: BaseException, attempt: int, node: Any, definition: Any
        ) -> bool:
            return True

        def get_retry_delay(self, attempt: int, node: Any, definition: Any) -> Any:
            return SECRET  # a wrong value that happens to be a secret

    def fail(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError("no")

    engine = WorkflowEngine(
        chain("a"),
        {"echo": NodeDefinition(fail)},
        plugins=[RedactionPlugin()],
        error_handler=Delayer(),
    )
    final = await engine.execute(initial_node_id="a", globals={"stripe": SECRET})
    assert "must be a number of milliseconds" in final.metadata["failedReason"]
    assert SECRET.encode() not in final.to_json()


@pytest.mark.parametrize(
    "hook", ["on_workflow_start", "on_workflow_complete", "on_before_node_execution"]
)
async def test_sys_exit_in_a_hook_is_logged_and_ignored(
    hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Exiting(Plugin):
        pass

    def leave(self: Plugin, *arguments: Any) -> None:
        raise SystemExit(1)

    setattr(Exiting, hook, leave)
    engine = engine_returning(StepResult({"ok": 1}), plugins=[Exiting()])
    final = await engine.execute(initial_node_id="a")
    assert final.status == "completed"
    assert f"failed in {hook}; ignored: SystemExit" in caplog.text


async def test_a_node_awaiting_a_task_cancelled_elsewhere_fails_the_node() -> None:
    async def waits(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        other = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        other.cancel()
        await other
        return StepResult({})

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(waits)})
    reason = await failed_reason(engine)
    assert "NodeCancelled: the node's code raised CancelledError" in reason


class Strange(BaseException):
    """Neither an Exception nor one of Python's own BaseExceptions."""


@pytest.mark.parametrize(
    ("raised", "told"),
    [
        (asyncio.CancelledError, "NodeCancelled"),
        (SystemExit, "NodeExit"),
        (GeneratorExit, "NodeAborted: the node's code raised GeneratorExit, not an Exception"),
        (Strange, "NodeAborted: the node's code raised Strange, not an Exception"),
    ],
)
async def test_a_node_raising_what_is_not_an_exception_fails_the_node(
    raised: type[BaseException], told: str
) -> None:
    def throws(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise raised()

    reason = await failed_reason(WorkflowEngine(chain("a"), {"echo": NodeDefinition(throws)}))
    assert told in reason


async def test_a_step_cancelled_from_outside_is_cancelled_not_failed() -> None:
    started = asyncio.Event()

    async def slow(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        started.set()
        await asyncio.sleep(10)
        return StepResult({})

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(slow)})
    step = asyncio.ensure_future(engine.execute_step(engine.create_initial_snapshot("w", "a")))
    await started.wait()
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step


async def test_a_failed_node_s_expression_error_naming_a_global_is_masked() -> None:
    workflow = {
        "nodes": [{"id": "a", "type": "echo", "data": {"x": "{{ input.missing[globals.t] }}"}}],
        "edges": [],
    }
    engine = WorkflowEngine(
        workflow,
        {"echo": NodeDefinition(lambda d, c, p, g: StepResult(d))},
        transform_engines=[JexlTransformEngine()],
        plugins=[RedactionPlugin()],
    )
    final = await engine.execute(initial_node_id="a", globals={"t": "tok_SECRET_123456"})
    assert "(reading '[REDACTED]')" in final.metadata["failedReason"]
    assert b"tok_SECRET_123456" not in final.to_json()


async def test_a_secret_in_its_decomposed_unicode_spelling_is_masked() -> None:
    secret = "caf\u00e9-secret-key"
    decomposed = "cafe\u0301-secret-key"
    engine = engine_returning(StepResult({"echo": decomposed}), plugins=[RedactionPlugin()])
    final = await engine.execute(initial_node_id="a", globals={"k": secret})
    assert final.context["a"][0].output == {"echo": "[REDACTED]"}


def test_ctrl_c_in_the_main_thread_ends_the_step() -> None:
    def interrupted(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise KeyboardInterrupt

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(interrupted)})
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(engine.execute(initial_node_id="a"))


def test_a_keyboard_interrupt_raised_by_a_node_in_another_thread_fails_the_node() -> None:
    def interrupted(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise KeyboardInterrupt

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(interrupted)})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        final = pool.submit(asyncio.run, engine.execute(initial_node_id="a")).result()
    assert "NodeAborted: the node's code raised KeyboardInterrupt" in final.metadata["failedReason"]


@pytest.mark.parametrize("pause", [False, True])
async def test_a_redaction_plugin_does_not_turn_what_json_cannot_hold_into_text(
    pause: bool,
) -> None:
    engine = engine_returning(
        StepResult({"when": object()}, pause=pause), plugins=[RedactionPlugin()]
    )
    reason = await failed_reason(engine, globals={"k": SECRET})
    assert "a value of type 'object' (at when)" in reason


THROWABLES = [SystemExit, GeneratorExit, asyncio.CancelledError, Strange, RuntimeError]


@pytest.mark.parametrize("raised", THROWABLES)
@pytest.mark.parametrize("method", ["should_retry", "get_retry_delay"])
async def test_an_error_handler_raising_anything_fails_the_node_saying_so(
    raised: type[BaseException], method: str
) -> None:
    class Handler(DefaultErrorHandler):
        def should_retry(
            self, error: BaseException, attempt: int, node: Any, definition: Any
        ) -> bool:
            if method == "should_retry":
                raise raised()
            return True

        def get_retry_delay(self, attempt: int, node: Any, definition: Any) -> int:
            raise raised()

    def fail(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError("no")

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(fail)}, error_handler=Handler())
    reason = await failed_reason(engine)
    assert f"(and its error handler raised {raised.__name__}" in reason


@pytest.mark.parametrize("raised", THROWABLES)
@pytest.mark.parametrize(
    "hook",
    [
        "on_workflow_start",
        "on_workflow_complete",
        "on_before_node_execution",
        "on_after_node_execution",
    ],
)
async def test_a_hook_raising_anything_is_logged_and_ignored(
    raised: type[BaseException], hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Raising(Plugin):
        pass

    def leave(self: Plugin, *arguments: Any) -> None:
        raise raised("not shown " + SECRET)

    setattr(Raising, hook, leave)
    final = await engine_returning(StepResult({"ok": 1}), plugins=[Raising()]).execute(
        initial_node_id="a"
    )
    assert final.status == "completed"
    assert f"failed in {hook}; ignored: {raised.__name__} (message withheld)" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize("raised", THROWABLES)
async def test_a_failing_transform_error_withholds_the_text(raised: type[BaseException]) -> None:
    class Masking(Plugin):
        def transform_error(self, ctx: Any, text: str) -> str:
            raise raised()

    def fail(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError(SECRET)

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(fail)}, plugins=[Masking()])
    final = await engine.execute(initial_node_id="a")
    assert final.context["a"][0].error == "ValueError: (message withheld: redaction failed)"
    assert SECRET.encode() not in final.to_json()


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot print")


class NotText(Exception):
    def __str__(self) -> Any:
        return 1234


@pytest.mark.parametrize(
    ("raised", "inner"), [(Unprintable, "RuntimeError"), (NotText, "TypeError")]
)
async def test_an_error_whose_text_cannot_be_read_is_a_node_error_retried_by_its_policy(
    raised: type[Exception], inner: str
) -> None:
    def fail(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise raised()

    definition = NodeDefinition(fail, retry_policy=RetryPolicy(max_attempts=1, interval=0))
    engine = WorkflowEngine(chain("a"), {"echo": definition})
    first = await engine.execute(initial_node_id="a")
    text = f"{raised.__name__}: (message unreadable: its __str__ raised {inner})"
    assert (first.status, first.context["a"][0].error) == ("error", text)
    second = await engine.execute(snapshot=first)
    assert second.metadata["failedReason"] == f"node 'a' failed after 2 attempts: {text}"


@pytest.mark.parametrize("plugins", [[], [RedactionPlugin()]])
async def test_an_error_text_is_kept_up_to_its_limit(plugins: list[Plugin]) -> None:
    def shout(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError("x" * 5_000_000)

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(shout)}, plugins=plugins)
    final = await engine.execute(initial_node_id="a", globals={"k": SECRET})
    error = final.context["a"][0].error
    assert error is not None
    assert error.startswith("ValueError: xxx")
    assert error.endswith(f"... (cut: {5_000_000 + len('ValueError: ')} characters in all)")
    assert len(error) < MAX_ERROR_TEXT + 50
    assert len(final.to_json()) < 3 * MAX_ERROR_TEXT


MEDDLING = {
    "nodes": [
        {"id": "p", "type": "src"},
        {"id": "m", "type": "meddle"},
    ],
    "edges": [{"source": "p", "target": "m"}],
}


def meddling_engine() -> WorkflowEngine:
    def meddle(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        context["p"][-1].output["a"].append(2)
        return StepResult({})

    return WorkflowEngine(
        MEDDLING,
        {
            "src": NodeDefinition(lambda d, c, p, g: StepResult({"a": [1]})),
            "meddle": NodeDefinition(meddle),
        },
    )


@pytest.mark.parametrize(
    "reload",
    [
        lambda snapshot: snapshot,
        lambda snapshot: Snapshot.from_json(snapshot.to_json()),
        lambda snapshot: Snapshot.model_validate_json(snapshot.model_dump_json()),
    ],
    ids=["in-memory", "from_json", "model_validate_json"],
)
async def test_a_recorded_output_is_read_only_whether_or_not_the_snapshot_was_reloaded(
    reload: Any,
) -> None:
    engine = meddling_engine()
    first = await engine.execute_step(engine.create_initial_snapshot("w", "p"))
    final = await engine.execute(snapshot=reload(first))
    assert final.status == "failed"
    assert "recorded outputs are read-only" in final.metadata["failedReason"]
    assert final.context["p"][0].output == {"a": [1]}


async def test_what_expressions_take_from_the_history_is_a_mutable_copy() -> None:
    workflow = {
        "nodes": [
            {"id": "p", "type": "src"},
            {"id": "m", "type": "edit", "data": {"v": "{{ nodes.p.output }}"}},
        ],
        "edges": [{"source": "p", "target": "m"}],
    }

    def edit(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        data["v"]["z"] = 1  # its own copy: the history is untouched
        return StepResult(data["v"])

    engine = WorkflowEngine(
        workflow,
        {
            "src": NodeDefinition(lambda d, c, p, g: StepResult({"a": 1})),
            "edit": NodeDefinition(edit),
        },
        transform_engines=[JexlTransformEngine()],
    )
    final = await engine.execute(initial_node_id="p")
    assert final.context["p"][0].output == {"a": 1}
    assert final.context["m"][0].output == {"a": 1, "z": 1}


def nested_lists(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("output", "told"),
    [
        ({"t": 10**5000}, "an integer of about 5001 digits (at t)"),
        (nested_lists(MAX_OUTPUT_DEPTH), "nests deeper than 197 levels"),
    ],
    ids=["huge-integer", "a-value-in-the-deepest-list"],
)
async def test_an_output_no_snapshot_reader_could_read_back_fails_the_node(
    output: Any, told: str
) -> None:
    reason = await failed_reason(engine_returning(StepResult(output)))
    assert told in reason


async def test_the_deepest_output_a_reader_reads_back_is_kept() -> None:
    output = nested_lists(MAX_OUTPUT_DEPTH - 1)
    final = await engine_returning(StepResult(output)).execute(initial_node_id="a")
    assert final.status == "completed"
    assert Snapshot.model_validate_json(final.model_dump_json()).context["a"][0].output == output
    assert Snapshot.from_json(final.to_json()).context["a"][0].output == output


def test_a_read_only_dict_answers_setdefault_for_a_key_it_has() -> None:
    held = freeze({"a": 1})
    assert held.setdefault("a", 2) == 1
    with pytest.raises(TypeError, match="read-only"):
        held.setdefault("b", 2)


def referring(times: int, keys: int, output: Any = None) -> WorkflowEngine:
    """A node whose templates refer to node a's output (35,000 numbers unless ``output``)
    ``times`` times per key."""
    template = "{{ [" + ",".join(["nodes.a.output"] * times) + "] }}"
    workflow = {
        "nodes": [
            {"id": "a", "type": "src"},
            {"id": "b", "type": "count", "data": {f"k{i}": template for i in range(keys)}},
        ],
        "edges": [{"source": "a", "target": "b"}],
    }
    return WorkflowEngine(
        workflow,
        {
            "src": NodeDefinition(
                lambda d, c, p, g: StepResult(list(range(35_000)) if output is None else output)
            ),
            "count": NodeDefinition(lambda d, c, p, g: StepResult(len(d))),
        },
        transform_engines=[JexlTransformEngine()],
    )


async def test_templates_referring_to_one_large_output_many_times_fail_the_node() -> None:
    """4 KB of template made 4 keys of 270 references to a 35,000-item output: 38 million
    elements copied for the executor (seconds of CPU, gigabytes of memory) while the
    expressions themselves stayed well within their budgets, as they share what they read."""
    reason = await failed_reason(referring(270, 4))
    assert "the input of node 'b' holds more than 4,000,000 characters and elements" in reason


async def test_a_large_key_referred_to_many_times_counts_each_time() -> None:
    """The keys of an output's objects were not counted: one 250,000-character key, 880
    times, was a 220 MB copy (and 440 MB of JSON for a map's children)."""
    reason = await failed_reason(referring(220, 4, {"k" * 250_000: 1}))
    assert "the input of node 'b' holds more than 4,000,000 characters and elements" in reason


async def test_a_node_may_refer_to_a_large_output_a_few_times() -> None:
    final = await referring(20, 4).execute(initial_node_id="a")
    assert final.status == "completed"
    assert final.context["b"][0].output == 4


@pytest.mark.parametrize("interval", [10**400, 10**31])
async def test_a_retry_delay_too_large_for_a_float_fails_the_node_saying_so(interval: int) -> None:
    """``10**400`` raised OverflowError out of ``execute_step``: no snapshot at all."""

    def boom(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise RuntimeError("down")

    engine = WorkflowEngine(
        chain("a"),
        {"echo": NodeDefinition(boom, retry_policy=RetryPolicy(max_attempts=3, interval=interval))},
    )
    stepped = await engine.execute_step(engine.create_initial_snapshot("w", "a"))
    assert stepped.status == "failed"
    assert "the retry delay of node 'a' of over 10**30 ms is out of range" in str(
        stepped.metadata["failedReason"]
    )
