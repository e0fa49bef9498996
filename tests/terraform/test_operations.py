"""What makes the deployment work on a new project and operable afterwards: the waits for
API enablement and IAM propagation, the reconciler, the alerts, and what git ignores."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.terraform.conftest import PROJECT_ID
from tests.terraform.hcl_config import ROOT, TerraformConfig, interpolations, single
from tests.terraform.hcl_eval import Evaluator

API_WAIT = "${time_sleep.apis}"
EVALUATED_DISPATCHER_URL = (
    "https://refluxo-dispatcher-${data.google_project.this.number}.europe-west1.run.app"
)

# --- waits on a new project --------------------------------------------------------------


def test_apis_are_waited_for_after_they_are_enabled(config: TerraformConfig) -> None:
    wait = config.resource("time_sleep", "apis")
    assert wait["depends_on"] == ["${google_project_service.enabled}"]
    assert wait["create_duration"] == "${var.api_propagation_wait}"
    # Re-waits when the set of APIs changes.
    assert "google_project_service.enabled" in wait["triggers"]["services"]


def _dependencies(config: TerraformConfig) -> dict[str, set[str]]:
    """Resource address -> the resources it refers to or depends on, locals expanded."""
    declared = {f"{t}.{n}" for t, n, _ in config.iter_resources()}
    graph: dict[str, set[str]] = {}
    for type_name, name, body in config.iter_resources():
        found: set[str] = set()
        for expression in interpolations(config.resolve(body)):
            for match in re.finditer(r"(?<![\w.])([a-z0-9_]+\.[a-z0-9_]+)", expression):
                if match.group(1) in declared:
                    found.add(match.group(1))
        graph[f"{type_name}.{name}"] = found
    return graph


def test_everything_that_calls_a_new_api_waits_for_it(config: TerraformConfig) -> None:
    """Every resource is created after the APIs' wait: it depends on it, directly or
    through a resource that does (only the enablement and the wait itself come before)."""
    graph = _dependencies(config)
    before = {"google_project_service.enabled", "time_sleep.apis"}
    for address in sorted(set(graph) - before):
        seen: set[str] = set()
        pending = [address]
        while pending:
            node = pending.pop()
            if node not in seen:
                seen.add(node)
                pending.extend(graph[node])
        assert "time_sleep.apis" in seen, f"{address} does not wait for the APIs"


def test_resources_name_the_wait_not_the_enablement(config: TerraformConfig) -> None:
    direct = {
        "google_firestore_database.default",
        "google_cloud_tasks_queue.steps",
        "google_pubsub_topic.runs",
        "google_pubsub_topic.runs_dead_letter",
        "google_secret_manager_secret.api_key",
        "google_storage_bucket.source",
        "google_project_service_identity.pubsub",
        "google_cloud_scheduler_job.reconcile",
        "google_logging_metric.failed_runs",
        "google_logging_metric.stalled_runs",
        "google_monitoring_notification_channel.email",
        "google_monitoring_alert_policy.dead_letters",
        *(f"google_service_account.{name}" for name in config.resources["google_service_account"]),
    }
    for address in sorted(direct):
        type_name, name = address.split(".")
        assert API_WAIT in config.resource(type_name, name).get("depends_on", []), address
    for type_name, name, body in config.iter_resources():
        assert "${google_project_service.enabled}" not in body.get("depends_on", []) or (
            type_name == "time_sleep"
        ), f"{type_name}.{name} should depend on time_sleep.apis, not on the enablement"


def test_functions_are_deployed_after_the_grants_have_propagated(
    config: TerraformConfig,
) -> None:
    wait = config.resource("time_sleep", "iam")
    assert wait["create_duration"] == "${var.iam_propagation_wait}"
    waited = set(wait["depends_on"])
    assert waited == {
        "${google_project_iam_member.function_datastore_user}",
        "${google_project_iam_member.function_log_writer}",
        "${google_cloud_tasks_queue_iam_member.function_enqueuer}",
        "${google_cloud_tasks_queue_iam_member.function_task_viewer}",
        "${google_service_account_iam_member.function_act_as_tasks_invoker}",
        "${google_secret_manager_secret_iam_member.api_key_accessor}",
        "${google_project_iam_member.build_log_writer}",
        "${google_project_iam_member.build_artifact_writer}",
        "${google_storage_bucket_iam_member.build_source_reader}",
        "${google_project_iam_member.build_staged_source_reader}",
    }
    # The same grants re-trigger the wait when they change.
    for dependency in waited:
        assert dependency[2:-1] in wait["triggers"]["grants"], dependency
    for name, body in config.resources["google_cloudfunctions2_function"].items():
        assert body["depends_on"] == ["${time_sleep.iam}"], name


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("api_propagation_wait", "60s", True),
        ("api_propagation_wait", "2m", True),
        ("api_propagation_wait", "60", False),
        ("iam_propagation_wait", "300s", True),
        ("iam_propagation_wait", "two minutes", False),
    ],
)
def test_wait_durations_are_validated(
    config: TerraformConfig, name: str, value: str, accepted: bool
) -> None:
    evaluator = Evaluator(config, {"project_id": PROJECT_ID, name: value})
    assert (evaluator.validation_errors(name) == []) is accepted


# --- the reconciler ------------------------------------------------------------------------


def test_the_reconciler_calls_the_dispatcher_as_the_tasks_invoker(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    job = config.resource("google_cloud_scheduler_job", "reconcile")
    assert job["name"] == "${var.name}-reconcile"
    assert job["region"] == "${var.region}"
    assert job["schedule"] == "${var.reconcile_schedule}"
    assert evaluator.variable("reconcile_schedule") == "*/5 * * * *"
    target = evaluator.evaluate(single(job, "http_target"))
    assert target["http_method"] == "POST"
    assert target["uri"] == f"{EVALUATED_DISPATCHER_URL}/tasks/reconcile"
    assert single(target, "oidc_token") == {
        "service_account_email": "${google_service_account.tasks_invoker.email}",
        "audience": EVALUATED_DISPATCHER_URL,
    }
    # The account the dispatcher checks the reconcile requests against.
    dispatcher = evaluator.local("function_environment")["dispatcher"]
    assert dispatcher["REFLUXO_RECONCILER_SERVICE_ACCOUNT"] == (
        "${google_service_account.tasks_invoker.email}"
    )
    # The tasks invoker may invoke the dispatcher, and the job waits for that grant.
    assert "${google_cloud_run_v2_service_iam_member.dispatcher_tasks_invoker}" in job["depends_on"]
    grant = config.resource("google_cloud_run_v2_service_iam_member", "dispatcher_tasks_invoker")
    assert config.resolve(grant["member"]) == (
        "serviceAccount:${google_service_account.tasks_invoker.email}"
    )
    assert "cloudscheduler" in config.locals["services"]


def test_reconcile_schedule_is_validated(config: TerraformConfig) -> None:
    for schedule, accepted in (("*/5 * * * *", True), ("0 * * * *", True), ("5m", False)):
        evaluator = Evaluator(config, {"project_id": PROJECT_ID, "reconcile_schedule": schedule})
        assert (evaluator.validation_errors("reconcile_schedule") == []) is accepted


# --- alerts --------------------------------------------------------------------------------


def test_log_based_metrics_count_failed_and_stalled_runs(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    functions = (
        'resource.type="cloud_run_revision" AND resource.labels.service_name=('
        '"refluxo-api" OR "refluxo-dispatcher" OR "refluxo-events")'
    )
    for name, event in (("failed_runs", "run_failed"), ("stalled_runs", "run_stalled")):
        metric = evaluator.evaluate(config.resource("google_logging_metric", name))
        assert metric["name"] == f"refluxo/{name}"
        assert metric["filter"] == f'{functions} AND jsonPayload.event="{event}"'
        descriptor = single(metric, "metric_descriptor")
        assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "INT64")
        assert [label["key"] for label in descriptor["labels"]] == ["workflow"]
        assert metric["label_extractors"] == {"workflow": "EXTRACT(jsonPayload.workflow)"}


def _threshold(policy: dict[str, Any]) -> dict[str, Any]:
    condition = single(policy, "conditions")
    threshold = single(condition, "condition_threshold")
    assert threshold["comparison"] == "COMPARISON_GT"
    return threshold


def test_alert_policies_watch_failed_runs_stalled_runs_and_dead_letters(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    policies = config.resources["google_monitoring_alert_policy"]
    assert set(policies) == {"failed_runs", "stalled_runs", "dead_letters"}
    for name in ("failed_runs", "stalled_runs"):
        threshold = _threshold(policies[name])
        assert (
            f"logging.googleapis.com/user/${{google_logging_metric.{name}.name}}"
            in threshold["filter"]
        )
        assert single(threshold, "aggregations")["per_series_aligner"] == "ALIGN_SUM"
        assert policies[name]["depends_on"] == ["${time_sleep.log_metrics}"]
    assert _threshold(policies["failed_runs"])["threshold_value"] == (
        "${var.alert_failed_runs_threshold}"
    )
    assert evaluator.variable("alert_failed_runs_threshold") == 0
    dead = _threshold(policies["dead_letters"])
    assert "pubsub.googleapis.com/subscription/num_undelivered_messages" in dead["filter"]
    assert "${google_pubsub_subscription.dead_letter.name}" in dead["filter"]
    assert dead["threshold_value"] == 0
    for name, policy in policies.items():
        assert policy["notification_channels"] == "${local.notification_channels}", name
        assert single(policy, "documentation")["content"], name
    assert config.locals["notification_channels"] == (
        "${[for channel in google_monitoring_notification_channel.email : channel.id]}"
    )


def test_notification_channels_come_from_a_list_of_emails(config: TerraformConfig) -> None:
    channel = config.resource("google_monitoring_notification_channel", "email")
    assert channel["for_each"] == "${toset(var.alert_emails)}"
    assert channel["type"] == "email"
    assert channel["labels"] == {"email_address": "${each.value}"}
    for emails, accepted in (([], True), (["a@b.example"], True), (["not an email"], False)):
        evaluator = Evaluator(config, {"project_id": PROJECT_ID, "alert_emails": emails})
        assert (evaluator.validation_errors("alert_emails") == []) is accepted


# --- git -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("terraform/terraform.tfstate", True),
        ("terraform/terraform.tfstate.backup", True),
        ("terraform/terraform.tfstate.1700000000.backup", True),
        ("terraform/prod.tfvars", True),
        ("terraform/prod.auto.tfvars.json", True),
        ("terraform/.terraform/providers/registry.terraform.io/x", True),
        ("terraform/.terraform/tmp/refluxo-source.zip", True),
        ("terraform/crash.log", True),
        ("terraform/crash.1700000000.log", True),
        ("terraform/.terraform.lock.hcl", False),  # the provider lock file is committed
        ("terraform/main.tf", False),
        ("terraform/backend.tf", False),
    ],
)
def test_gitignore_covers_state_variables_and_working_files(path: str, ignored: bool) -> None:
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--quiet", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    assert (result.returncode == 0) is ignored, path
