"""The step queue's retry bound, the dispatch deadline and the concurrency: what the
configuration computes, checked against Cloud Tasks' documented rules and against what
terraform/README.md states."""

from __future__ import annotations

from typing import Any

import pytest

from tests.terraform.conftest import PROJECT_ID
from tests.terraform.hcl_config import TERRAFORM_DIR, TerraformConfig, single
from tests.terraform.hcl_eval import Evaluator

README = TERRAFORM_DIR / "README.md"
MAX_DISPATCH_DEADLINE_S = 1800  # Cloud Tasks: 15 s to 30 min for HTTP targets
MIN_DISPATCH_DEADLINE_S = 15


def cloud_tasks_waits(
    min_backoff: int, max_backoff: int, max_doublings: int, max_attempts: int
) -> list[int]:
    """The waits before retries 1 .. max_attempts - 1, as RetryConfig documents them: the
    interval starts at min_backoff, doubles max_doublings times, then grows linearly by
    min_backoff * 2^max_doublings, capped at max_backoff."""
    waits: list[int] = []
    wait = min_backoff
    for retry in range(1, max_attempts):
        if retry > 1:
            if retry <= max_doublings + 1:
                wait = wait * 2
            else:
                wait = wait + min_backoff * 2**max_doublings
        waits.append(min(wait, max_backoff))
    return waits


def test_the_model_of_cloud_tasks_backoff_matches_its_documentation() -> None:
    # RetryConfig: "if min_backoff is 10s, max_backoff is 300s, and max_doublings is 3,
    # then [...] the requests will retry at 10s, 20s, 40s, 80s, 160s, 240s, 300s, 300s".
    assert cloud_tasks_waits(10, 300, 3, 9) == [10, 20, 40, 80, 160, 240, 300, 300]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"tasks_min_backoff_seconds": 10, "tasks_max_doublings": 3},
        {"tasks_max_attempts": 100, "tasks_max_platform_retries": 50},
        {"tasks_max_doublings": 0, "tasks_max_backoff_seconds": 5},
        {"tasks_min_backoff_seconds": 2, "tasks_max_backoff_seconds": 3600},
    ],
)
def test_the_configuration_computes_the_schedule_cloud_tasks_follows(
    config: TerraformConfig, overrides: dict[str, int]
) -> None:
    evaluator = Evaluator(config, {"project_id": PROJECT_ID, **overrides})
    settings = {
        name: evaluator.variable(name)
        for name in (
            "tasks_min_backoff_seconds",
            "tasks_max_backoff_seconds",
            "tasks_max_doublings",
            "tasks_max_attempts",
            "tasks_max_platform_retries",
        )
    }
    for name in settings:
        assert evaluator.validation_errors(name) == [], name
    waits = cloud_tasks_waits(
        settings["tasks_min_backoff_seconds"],
        settings["tasks_max_backoff_seconds"],
        settings["tasks_max_doublings"],
        settings["tasks_max_attempts"],
    )
    assert evaluator.local("tasks_retry_waits_s") == waits
    assert evaluator.local("tasks_last_attempt_s") == sum(waits)
    retries = settings["tasks_max_platform_retries"]
    assert evaluator.local("tasks_node_failed_s") == sum(waits[: retries + 1])
    retry = evaluator.evaluate(
        single(config.resource("google_cloud_tasks_queue", "steps"), "retry_config")
    )
    assert retry["max_retry_duration"] == f"{sum(waits)}s"
    assert retry["max_attempts"] == settings["tasks_max_attempts"]


def test_the_attempts_alone_bound_the_retries(evaluator: Evaluator) -> None:
    # Cloud Tasks retries until BOTH max_attempts and max_retry_duration are reached: with
    # the duration no longer than the time of the last attempt, the task is deleted right
    # after its last attempt, never later.
    attempts = evaluator.variable("tasks_max_attempts")
    duration = evaluator.local("tasks_last_attempt_s")
    waits = evaluator.local("tasks_retry_waits_s")
    assert len(waits) == attempts - 1
    assert duration <= sum(waits)


def test_the_dispatcher_gets_to_fail_the_node_before_the_queue_gives_up(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    retries = evaluator.variable("tasks_max_platform_retries")
    attempts = evaluator.variable("tasks_max_attempts")
    # Attempt retries + 2 carries X-CloudTasks-TaskRetryCount = retries + 1: the dispatcher
    # fails the node there; at least one more attempt is left for that decision.
    assert attempts >= retries + 3
    rejected = Evaluator(
        config,
        {"project_id": PROJECT_ID, "tasks_max_attempts": 12, "tasks_max_platform_retries": 10},
    )
    assert rejected.validation_errors("tasks_max_attempts")
    dispatcher = evaluator.local("function_environment")["dispatcher"]
    assert dispatcher["REFLUXO_MAX_PLATFORM_RETRIES"] == str(retries)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10)
    return f"{number}{suffix or 'th'}"


def _waits_text(waits: list[int], maximum: int) -> str:
    growing = [w for w in waits if w < maximum]
    return ", ".join(str(w) for w in growing) + f" s, then {maximum} s"


def expected_readme_rows(evaluator: Evaluator) -> list[str]:
    """The README's retry table, computed from the defaults."""
    maximum = evaluator.variable("tasks_max_backoff_seconds")
    attempts = evaluator.variable("tasks_max_attempts")
    retries = evaluator.variable("tasks_max_platform_retries")
    waits = cloud_tasks_waits(
        evaluator.variable("tasks_min_backoff_seconds"),
        maximum,
        evaluator.variable("tasks_max_doublings"),
        attempts,
    )
    failed_at = sum(waits[: retries + 1])
    last = sum(waits)
    timeout = evaluator.variable("function_timeout_seconds")
    margin = evaluator.variable("tasks_dispatch_margin_seconds")
    instances = evaluator.variable("max_instances")
    per_instance = evaluator.variable("dispatcher_concurrency")
    rows: list[tuple[str, Any]] = [
        ("Waits between attempts", _waits_text(waits, maximum)),
        ("Platform retries tolerated (`REFLUXO_MAX_PLATFORM_RETRIES`)", retries),
        (
            "Attempt that fails the node by its retry policy",
            f"the {_ordinal(retries + 2)}, {failed_at} s ({_minutes(failed_at)}) after the first",
        ),
        ("Attempts before the queue deletes the task (`max_attempts`)", attempts),
        (
            "Last attempt (`max_retry_duration`)",
            f"the {_ordinal(attempts)}, {last} s ({_minutes(last)}) after the first",
        ),
        (
            "Dispatch deadline (`REFLUXO_DISPATCH_DEADLINE_S`)",
            f"{timeout + margin} s: the {timeout} s function timeout + {margin} s for a cold start",
        ),
        (
            "Steps dispatched at once (`max_concurrent_dispatches`)",
            f"{instances * per_instance}: {instances} instances x {per_instance} per instance",
        ),
    ]
    return [f"| {name} | {value} |" for name, value in rows]


def test_the_readme_states_the_computed_bound(evaluator: Evaluator) -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    for row in expected_readme_rows(evaluator):
        assert row in lines, f"terraform/README.md should say:\n{row}"
    # The numbers the configuration itself computes, too.
    assert f"{evaluator.local('tasks_last_attempt_s')} s" in text
    assert f"{evaluator.local('tasks_node_failed_s')} s" in text
    assert "100 attempts" not in text


# --- dispatch deadline -------------------------------------------------------------------------


def test_dispatch_deadline_is_the_timeout_plus_a_margin(evaluator: Evaluator) -> None:
    timeout = evaluator.variable("function_timeout_seconds")
    margin = evaluator.variable("tasks_dispatch_margin_seconds")
    deadline = evaluator.local("tasks_dispatch_deadline_s")
    assert deadline == timeout + margin
    assert margin >= 15
    assert MIN_DISPATCH_DEADLINE_S <= deadline <= MAX_DISPATCH_DEADLINE_S
    for environment in evaluator.local("function_environment").values():
        assert environment["REFLUXO_DISPATCH_DEADLINE_S"] == str(deadline)
        assert environment["REFLUXO_FUNCTION_TIMEOUT_S"] == str(timeout)


@pytest.mark.parametrize(
    ("timeout", "margin", "accepted"),
    [
        (60, 60, True),
        (1740, 60, True),
        (1741, 60, False),
        (1785, 15, True),
        (1786, 15, False),
        (3600, 60, False),
        (0, 60, False),
        (30.5, 60, False),
    ],
)
def test_the_timeout_is_capped_so_the_deadline_fits_cloud_tasks(
    config: TerraformConfig, timeout: float, margin: int, accepted: bool
) -> None:
    evaluator = Evaluator(
        config,
        {
            "project_id": PROJECT_ID,
            "function_timeout_seconds": timeout,
            "tasks_dispatch_margin_seconds": margin,
        },
    )
    errors = evaluator.validation_errors("function_timeout_seconds")
    assert (errors == []) is accepted, errors
    if accepted:
        assert evaluator.local("tasks_dispatch_deadline_s") <= MAX_DISPATCH_DEADLINE_S


def test_the_margin_is_bounded(config: TerraformConfig) -> None:
    for margin, accepted in ((14, False), (15, True), (600, True), (601, False)):
        evaluator = Evaluator(
            config, {"project_id": PROJECT_ID, "tasks_dispatch_margin_seconds": margin}
        )
        assert (evaluator.validation_errors("tasks_dispatch_margin_seconds") == []) is accepted


def test_the_scheduler_waits_as_long_as_a_step(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    job = config.resource("google_cloud_scheduler_job", "reconcile")
    assert evaluator.evaluate(job["attempt_deadline"]) == "120s"


# --- concurrency ---------------------------------------------------------------------------


def test_the_queue_dispatches_no_more_than_the_dispatcher_serves(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    queue = config.resource("google_cloud_tasks_queue", "steps")
    dispatches = evaluator.evaluate(single(queue, "rate_limits")["max_concurrent_dispatches"])
    dispatcher = single(
        config.resource("google_cloudfunctions2_function", "dispatcher"), "service_config"
    )
    instances = evaluator.evaluate(dispatcher["max_instance_count"])
    per_instance = evaluator.evaluate(dispatcher["max_instance_request_concurrency"])
    assert dispatches == instances * per_instance == 80
    threads = evaluator.local("function_environment")["dispatcher"]["THREADS"]
    assert threads == str(per_instance)


def test_functions_get_a_whole_cpu_so_they_can_serve_several_requests(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    assert float(evaluator.variable("function_cpu")) >= 1
    assert evaluator.variable("function_memory") == "1Gi"
    concurrency = evaluator.local("concurrency")
    assert concurrency == {"api": 16, "dispatcher": 8, "events": 8}
    assert 8 <= concurrency["dispatcher"] <= 16


@pytest.mark.parametrize(
    ("overrides", "rejected"),
    [
        (
            {"function_cpu": "0.333"},
            {"api_concurrency", "dispatcher_concurrency", "events_concurrency"},
        ),
        (
            {
                "function_cpu": "0.333",
                "api_concurrency": 1,
                "dispatcher_concurrency": 1,
                "events_concurrency": 1,
            },
            set(),
        ),
        ({"function_cpu": "2", "dispatcher_concurrency": 16}, set()),
        (
            {"function_cpu": "one"},
            {"function_cpu", "api_concurrency", "dispatcher_concurrency", "events_concurrency"},
        ),
        ({"max_instances": 1000, "dispatcher_concurrency": 8}, {"dispatcher_concurrency"}),
        ({"function_memory": "1 GiB"}, {"function_memory"}),
    ],
)
def test_cpu_and_concurrency_validations(
    config: TerraformConfig, overrides: dict[str, Any], rejected: set[str]
) -> None:
    evaluator = Evaluator(config, {"project_id": PROJECT_ID, **overrides})
    names = (
        "function_cpu",
        "function_memory",
        "api_concurrency",
        "dispatcher_concurrency",
        "events_concurrency",
        "max_instances",
    )
    failing = {name for name in names if evaluator.validation_errors(name)}
    assert failing == rejected
