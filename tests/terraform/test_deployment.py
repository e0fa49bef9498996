"""The deployment in ``terraform/``: every resource exists with its key settings."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.terraform.conftest import PROJECT_ID
from tests.terraform.hcl_config import TerraformConfig, interpolations, single
from tests.terraform.hcl_eval import Evaluator
from tests.terraform.schema_check import provider_of

INVOKER_EMAIL = "${google_service_account.tasks_invoker.email}"
DISPATCHER_URL = (
    "https://${var.name}-dispatcher-${data.google_project.this.number}.${var.region}.run.app"
)
# The dispatcher URL as the evaluator gives it with the defaults (the project number is
# only known after apply).
EVALUATED_DISPATCHER_URL = (
    "https://refluxo-dispatcher-${data.google_project.this.number}.europe-west1.run.app"
)
FUNCTIONS = {"api": "api", "dispatcher": "step", "events": "on_message"}
COMMON_ENVIRONMENT = {
    "GOOGLE_CLOUD_PROJECT": PROJECT_ID,
    "REFLUXO_BACKEND": "gcp",
    "REFLUXO_APP": "refluxo.examples.app:app",
    "REFLUXO_REGION": "europe-west1",
    "REFLUXO_TASKS_QUEUE": "${google_cloud_tasks_queue.steps.name}",
    "REFLUXO_STEP_URL": f"{EVALUATED_DISPATCHER_URL}/tasks/step",
    "REFLUXO_TASKS_SERVICE_ACCOUNT": INVOKER_EMAIL,
    "REFLUXO_OIDC_AUDIENCE": EVALUATED_DISPATCHER_URL,
    "REFLUXO_VERIFY_OIDC": "true",
    "REFLUXO_INVOKER_IAM": "true",
    "REFLUXO_FUNCTION_TIMEOUT_S": "60",
    "REFLUXO_DISPATCH_DEADLINE_S": "120",
    "REFLUXO_COLLECTION_PREFIX": "refluxo",
    "REFLUXO_FIRESTORE_DATABASE": "${google_firestore_database.default.name}",
    "REFLUXO_RUN_RETENTION_DAYS": "30",
}
EXPECTED_ENVIRONMENT = {
    "api": {**COMMON_ENVIRONMENT, "REFLUXO_ROUTES": "api", "THREADS": "16"},
    "dispatcher": {
        **COMMON_ENVIRONMENT,
        "REFLUXO_ROUTES": "dispatcher",
        "THREADS": "8",
        "REFLUXO_MAX_PLATFORM_RETRIES": "10",
        "REFLUXO_RECONCILER_SERVICE_ACCOUNT": INVOKER_EMAIL,
    },
    "events": {**COMMON_ENVIRONMENT, "REFLUXO_ROUTES": "events", "THREADS": "8"},
}
REQUIRED_SERVICES = {
    "cloudfunctions",
    "run",
    "cloudbuild",
    "artifactregistry",
    "eventarc",
    "pubsub",
    "cloudtasks",
    "cloudscheduler",
    "firestore",
    "secretmanager",
    "iam",
    "logging",
    "monitoring",
}


def quoted(expression: str) -> list[str]:
    """The string literals of an HCL expression, in order."""
    return re.findall(r'"([^"]*)"', expression)


def variable_default(config: TerraformConfig, name: str) -> Any:
    assert name in config.variables, f"variable {name} is not declared"
    return config.variables[name].get("default")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# --- providers, variables, outputs ---------------------------------------------------------


def test_required_providers_and_terraform_version(config: TerraformConfig) -> None:
    required: dict[str, Any] = {}
    versions: list[str] = []
    for block in config.terraform:
        for entry in block.get("required_providers", []):
            required.update(entry)
        if "required_version" in block:
            versions.append(block["required_version"])
    # Write-only arguments and ephemeral resources need Terraform 1.11.
    assert versions == [">= 1.11.0"]
    expected = {
        "google": ("hashicorp/google", "~> 6.50"),
        "google-beta": ("hashicorp/google-beta", "~> 6.50"),
        "archive": ("hashicorp/archive", "~> 2.7"),
        "random": ("hashicorp/random", "~> 3.7"),
        "time": ("hashicorp/time", "~> 0.13"),
    }
    assert {name: (p["source"], p["version"]) for name, p in required.items()} == expected
    # The archive's `source` blocks and glob handling: at least 2.5.
    assert _version(required["archive"]["version"].removeprefix("~> ")) >= (2, 5)
    for name in ("google", "google-beta"):
        provider = config.providers[name]
        assert provider["project"] == "${var.project_id}"
        assert provider["region"] == "${var.region}"


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("region", "europe-west1"),
        ("name", "refluxo"),
        ("api_invoker_members", []),
        ("function_timeout_seconds", 60),
        ("tasks_dispatch_margin_seconds", 60),
        ("function_cpu", "1"),
        ("function_memory", "1Gi"),
        ("api_concurrency", 16),
        ("dispatcher_concurrency", 8),
        ("events_concurrency", 8),
        ("app", "refluxo.examples.app:app"),
        ("app_source_patterns", []),
        ("run_retention_days", 30),
        ("reconcile_schedule", "*/5 * * * *"),
        ("alert_emails", []),
        ("api_key_version", 1),
        ("api_propagation_wait", "60s"),
        ("iam_propagation_wait", "120s"),
    ],
)
def test_variable_defaults(config: TerraformConfig, name: str, default: Any) -> None:
    assert variable_default(config, name) == default


def test_variables_accept_their_defaults(config: TerraformConfig, evaluator: Evaluator) -> None:
    rejected = {name: evaluator.validation_errors(name) for name in config.variables}
    assert {name: errors for name, errors in rejected.items() if errors} == {}


def test_project_and_max_instances_variables(config: TerraformConfig) -> None:
    assert "default" not in config.variables["project_id"], "project_id must be given"
    assert isinstance(variable_default(config, "max_instances"), int)


def test_removed_variables_are_gone(config: TerraformConfig) -> None:
    # The build account and the queue's concurrency are no longer free settings: the build
    # account is created here, the concurrency follows from the dispatcher's capacity.
    assert "build_service_account" not in config.variables
    assert "tasks_max_concurrent_dispatches" not in config.variables


def test_name_validation_keeps_derived_names_within_google_limits(
    config: TerraformConfig,
) -> None:
    condition = config.variables["name"]["validation"][0]["condition"]
    pattern = quoted(condition)[0]
    accepted = ["refluxo", "ab", "wf-prod-eu-0001", "x" * 15]
    rejected = ["Refluxo", "1abc", "-abc", "abc-", "x" * 16, "a_b", "a", ""]
    suffixes = {
        body["account_id"].removeprefix("${var.name}")
        for body in config.resources["google_service_account"].values()
    }
    assert "-events-trigger" in suffixes
    for name in accepted:
        assert re.fullmatch(pattern, name), name
        # service account ids are 6-30 characters
        for suffix in suffixes:
            assert 6 <= len(f"{name}{suffix}") <= 30, suffix
        # the deterministic URL's first DNS label, with a 13-digit project number
        assert len(f"{name}-dispatcher-{'9' * 13}") <= 63
    for name in rejected:
        assert not re.fullmatch(pattern, name), name


def test_api_invoker_members_can_never_be_public(config: TerraformConfig) -> None:
    conditions = [v["condition"] for v in config.variables["api_invoker_members"]["validation"]]
    public = [c for c in conditions if "allUsers" in c]
    assert public, "api_invoker_members has no validation refusing public members"
    assert set(quoted(public[0])) >= {"allUsers", "allAuthenticatedUsers"}
    assert "!contains(" in public[0]


def test_outputs(config: TerraformConfig) -> None:
    values = {name: body["value"] for name, body in config.outputs.items()}
    assert values["api_url"] == "${google_cloudfunctions2_function.api.service_config[0].uri}"
    assert values["dispatcher_url"] == "${local.dispatcher_url}"
    assert values["events_topic"] == "${google_pubsub_topic.runs.id}"
    assert values["dead_letter_topic"] == "${google_pubsub_topic.runs_dead_letter.id}"
    assert values["tasks_queue"] == "${google_cloud_tasks_queue.steps.name}"
    assert values["api_key_secret"] == "${google_secret_manager_secret.api_key.id}"
    assert values["reconcile_job"] == "${google_cloud_scheduler_job.reconcile.id}"
    assert set(values["service_accounts"]) == {
        "api",
        "dispatcher",
        "events",
        "tasks_invoker",
        "events_trigger",
        "build",
    }
    assert values["tasks_retry_bound"]["last_attempt_after_s"] == "${local.tasks_last_attempt_s}"
    for name, value in values.items():
        for expression in interpolations(value):
            assert "random_password" not in expression, f"output {name} leaks the key"
            assert "secret_data" not in expression, f"output {name} leaks the key"


# --- APIs ------------------------------------------------------------------------------------


def test_project_services(config: TerraformConfig) -> None:
    enabled = config.resource("google_project_service", "enabled")
    assert enabled["for_each"] == "${local.services}"
    services = set(quoted(config.locals["services"]))
    assert services >= REQUIRED_SERVICES
    assert enabled["service"] == "${each.key}.googleapis.com"
    assert enabled["disable_on_destroy"] is False
    assert enabled["project"] == "${var.project_id}"


# --- Firestore -------------------------------------------------------------------------------


def test_firestore_database(config: TerraformConfig) -> None:
    database = config.resource("google_firestore_database", "default")
    assert database["name"] == "(default)"
    assert database["type"] == "FIRESTORE_NATIVE"
    assert database["location_id"] == "${var.region}"
    assert database["point_in_time_recovery_enablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"
    assert database["deletion_policy"] == "ABANDON"
    assert "DELETE_PROTECTION_ENABLED" in database["delete_protection_state"]
    assert variable_default(config, "deletion_protection") is True


def _index_fields(config: TerraformConfig, name: str) -> list[tuple[str, str]]:
    index = config.resource("google_firestore_index", name)
    assert index["database"] == "${google_firestore_database.default.name}"
    assert index["query_scope"] == "COLLECTION"
    assert config.resolve(index["collection"]) == "${var.name}_runs"
    return [(f["field_path"], f["order"]) for f in index["fields"]]


def test_firestore_indexes_for_listing_runs(config: TerraformConfig) -> None:
    # Newest first, ties by run id: documents are named by a hash of the run id.
    fields = _index_fields(config, "runs_by_created")
    assert fields == [("createdAt", "DESCENDING"), ("runId", "DESCENDING")]
    fields = _index_fields(config, "runs_by_status")
    assert fields == [("status", "ASCENDING"), ("createdAt", "DESCENDING"), ("runId", "DESCENDING")]


def test_firestore_index_for_the_reconciler(config: TerraformConfig) -> None:
    # Overdue runs: dueAt alone (absent when nothing is expected), ties by run id.
    fields = _index_fields(config, "runs_by_due")
    assert fields == [("dueAt", "ASCENDING"), ("runId", "ASCENDING")]
    assert set(config.resources["google_firestore_index"]) == {
        "runs_by_created",
        "runs_by_status",
        "runs_by_due",
    }


def _field_settings(config: TerraformConfig, evaluator: Evaluator) -> dict[tuple[str, str], Any]:
    """(collection, field) -> the google_firestore_field body, for_each expanded."""
    found: dict[tuple[str, str], Any] = {}
    for name, body in config.resources["google_firestore_field"].items():
        assert body["database"] == "${google_firestore_database.default.name}", name
        if "for_each" in body:
            for key, each in sorted(evaluator.evaluate(body["for_each"]).items()):
                scope = {"each": {"key": key, "value": each}}
                collection = evaluator.expression(body["collection"][2:-1], scope)
                field = body["field"]
                if field.startswith("${"):
                    field = evaluator.expression(field[2:-1], scope)
                assert (collection, field) not in found
                found[(collection, field)] = body
        else:
            found[(evaluator.evaluate(body["collection"]), body["field"])] = body
    return found


def test_never_queried_fields_are_exempt_from_indexing(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    settings = _field_settings(config, evaluator)
    exempt = {key for key, body in settings.items() if body.get("index_config") == [{}]}
    assert exempt == {
        ("refluxo_runs", "head"),
        ("refluxo_runs", "input"),
        ("refluxo_runs", "pending"),
        ("refluxo_runs", "nodeCounts"),
        ("refluxo_runs", "recentCommits"),
        ("refluxo_runs", "updatedAt"),
        ("refluxo_runs", "expireAt"),
        # Read only through the composite indexes.
        ("refluxo_runs", "createdAt"),
        ("refluxo_runs", "runId"),
        ("refluxo_runs", "dueAt"),
        # Rewritten by every commit or read from the document only, never queried.
        ("refluxo_runs", "version"),
        ("refluxo_runs", "resultCount"),
        ("refluxo_runs", "definitionVersion"),
        ("refluxo_runs", "hasJoins"),
        ("results", "result"),
        ("results", "expireAt"),
        # Results are read by document name, not queried by node.
        ("results", "nodeId"),
        ("results", "nodeIndex"),
        # The join ledger is read by document name (ends in name order), never queried.
        ("ends", "index"),
        ("ends", "runId"),
        ("ends", "status"),
        ("ends", "output"),
        ("ends", "error"),
        ("ends", "expireAt"),
        ("counts", "shard"),
        ("counts", "ended"),
        ("counts", "failed"),
        ("counts", "expireAt"),
        ("inputs", "items"),
        ("inputs", "expireAt"),
        ("refluxo_definitions", "body"),
    }
    assert set(settings) == exempt  # nothing else is configured
    # What is queried on its own keeps its automatic indexes: the sweep of finished runs
    # queries retentionPending by equality, the timeline orders results by seq.
    # (The status of a child's end, in the ledger, is not queried: exempt.)
    queried = {
        ("refluxo_runs", "status"),
        ("refluxo_runs", "retentionPending"),
        ("refluxo_runs", "workflow"),
        ("results", "seq"),
    }
    assert not set(settings) & queried


def test_expire_at_is_the_ttl_field_of_runs_results_and_join_ledgers(
    config: TerraformConfig, evaluator: Evaluator
) -> None:
    settings = _field_settings(config, evaluator)
    ttl = {key for key, body in settings.items() if "ttl_config" in body}
    # A TTL deletes single documents: every collection group the store stamps (the run's
    # head, its results and its join ledger's ends, counts and inputs) has a policy.
    assert ttl == {
        ("refluxo_runs", "expireAt"),
        ("results", "expireAt"),
        ("ends", "expireAt"),
        ("counts", "expireAt"),
        ("inputs", "expireAt"),
    }
    # The collection groups are the subcollections the store writes under joins/{version}.
    from refluxo.backends.gcp.firestore import layout, store

    assert {layout.ENDS, layout.COUNTS, store.INPUTS} == {"ends", "counts", "inputs"}
    for key in ttl:
        assert single(settings[key], "ttl_config") == {}
    # The retention the runtime writes into expireAt.
    for environment in evaluator.local("function_environment").values():
        assert environment["REFLUXO_RUN_RETENTION_DAYS"] == "30"


def test_run_retention_validation(config: TerraformConfig) -> None:
    for days, valid in ((1, True), (30, True), (3650, True), (0, False), (1.5, False)):
        errors = Evaluator(config, {"project_id": PROJECT_ID, "run_retention_days": days})
        assert (errors.validation_errors("run_retention_days") == []) is valid, days


# --- Cloud Tasks -----------------------------------------------------------------------------


def test_tasks_queue(config: TerraformConfig, evaluator: Evaluator) -> None:
    queue = config.resource("google_cloud_tasks_queue", "steps")
    assert queue["name"] == "${var.name}-steps"
    assert queue["location"] == "${var.region}"
    rates = single(queue, "rate_limits")
    assert rates["max_dispatches_per_second"] == "${var.tasks_max_dispatches_per_second}"
    assert rates["max_concurrent_dispatches"] == "${local.tasks_max_concurrent_dispatches}"
    retry = evaluator.evaluate(single(queue, "retry_config"))
    assert retry == {
        "max_attempts": 20,
        "max_retry_duration": "3511s",
        "min_backoff": "1s",
        "max_backoff": "300s",
        "max_doublings": 8,
    }
    logging = single(queue, "stackdriver_logging_config")
    assert logging["sampling_ratio"] == "${var.tasks_log_sampling_ratio}"
    assert 0 < variable_default(config, "tasks_log_sampling_ratio") <= 1


# --- source bucket ---------------------------------------------------------------------------


def test_source_bucket_is_private_and_versioned(config: TerraformConfig) -> None:
    bucket = config.resource("google_storage_bucket", "source")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["location"] == "${var.region}"
    assert single(bucket, "versioning")["enabled"] is True
    assert bucket["force_destroy"] == "${var.force_destroy_source_bucket}"
    assert variable_default(config, "force_destroy_source_bucket") is False


def test_source_object_is_named_by_the_archive_md5(config: TerraformConfig) -> None:
    obj = config.resource("google_storage_bucket_object", "source")
    assert "${data.archive_file.source.output_md5}" in obj["name"]
    assert obj["source"] == "${data.archive_file.source.output_path}"
    assert obj["bucket"] == "${google_storage_bucket.source.name}"


# --- secret ----------------------------------------------------------------------------------


def test_api_key_is_generated_outside_the_state(config: TerraformConfig) -> None:
    secret = config.resource("google_secret_manager_secret", "api_key")
    assert secret["secret_id"] == "${var.name}-api-key"
    assert single(single(secret, "replication"), "auto") == {}
    # An ephemeral value, written through the write-only argument: never in the state.
    password = config.ephemeral["random_password"]["api_key"]
    assert password["length"] >= 32
    version = config.resource("google_secret_manager_secret_version", "api_key")
    assert {key: value for key, value in version.items() if key != "lifecycle"} == {
        "secret": "${google_secret_manager_secret.api_key.id}",
        "secret_data_wo": "${ephemeral.random_password.api_key.result}",
        "secret_data_wo_version": "${var.api_key_version}",
    }
    # Rotation creates the new version (and redeploys the API on it) before deleting the old.
    assert single(version, "lifecycle") == {"create_before_destroy": True}
    # No stateful generator and no plain secret_data anywhere.
    assert "random_password" not in config.resources
    for type_name, name, body in config.iter_resources():
        assert "secret_data" not in body, f"{type_name}.{name}"


# --- functions -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "entry_point"), sorted(FUNCTIONS.items()))
def test_function(
    config: TerraformConfig, evaluator: Evaluator, name: str, entry_point: str
) -> None:
    function = config.resource("google_cloudfunctions2_function", name)
    assert config.resolve(function["name"]) == f"${{var.name}}-{name}"
    assert function["location"] == "${var.region}"
    build = single(function, "build_config")
    assert build["runtime"] == "python311"
    assert build["entry_point"] == entry_point
    assert build["service_account"] == "${google_service_account.build.id}"
    storage = single(single(build, "source"), "storage_source")
    assert storage == {
        "bucket": "${google_storage_bucket.source.name}",
        "object": "${google_storage_bucket_object.source.name}",
    }
    service = single(function, "service_config")
    assert service["service_account_email"] == f"${{google_service_account.{name}.email}}"
    timeout = "${local.events_timeout_s}" if name == "events" else "${var.function_timeout_seconds}"
    assert service["timeout_seconds"] == timeout
    assert service["max_instance_count"] == "${var.max_instances}"
    assert service["available_cpu"] == "${var.function_cpu}"
    assert service["available_memory"] == "${var.function_memory}"
    assert evaluator.evaluate(service["max_instance_request_concurrency"]) == int(
        EXPECTED_ENVIRONMENT[name]["THREADS"]
    )
    assert evaluator.evaluate(service["environment_variables"]) == EXPECTED_ENVIRONMENT[name]
    assert function["depends_on"] == ["${time_sleep.iam}"]


def test_each_function_serves_only_its_routes(evaluator: Evaluator) -> None:
    environments = evaluator.local("function_environment")
    assert {name: env["REFLUXO_ROUTES"] for name, env in environments.items()} == {
        "api": "api",
        "dispatcher": "dispatcher",
        "events": "events",
    }
    # Only the dispatcher decides when a step has failed, and checks the reconciler.
    only_dispatcher = {"REFLUXO_MAX_PLATFORM_RETRIES", "REFLUXO_RECONCILER_SERVICE_ACCOUNT"}
    for name, environment in environments.items():
        assert (only_dispatcher <= set(environment)) is (name == "dispatcher"), name


def test_only_the_api_mounts_the_api_key(config: TerraformConfig) -> None:
    functions = config.resources["google_cloudfunctions2_function"]
    api = single(functions["api"], "service_config")
    assert api["secret_environment_variables"] == [
        {
            "key": "REFLUXO_API_KEY",
            "project_id": "${var.project_id}",
            "secret": "${google_secret_manager_secret.api_key.secret_id}",
            "version": "${google_secret_manager_secret_version.api_key.version}",
        }
    ]
    for name in ("dispatcher", "events"):
        assert "secret_environment_variables" not in single(functions[name], "service_config")


def test_internal_functions_refuse_traffic_from_outside_google_cloud(
    config: TerraformConfig,
) -> None:
    functions = config.resources["google_cloudfunctions2_function"]
    ingress = {
        name: single(body, "service_config")["ingress_settings"] for name, body in functions.items()
    }
    assert ingress == {
        "api": "ALLOW_ALL",
        "dispatcher": "ALLOW_INTERNAL_ONLY",
        "events": "ALLOW_INTERNAL_ONLY",
    }


def test_dispatcher_url_is_computed_not_read_from_the_dispatcher(
    config: TerraformConfig,
) -> None:
    assert config.resolve(config.locals["dispatcher_url"]) == DISPATCHER_URL
    sample = DISPATCHER_URL.replace("${var.name}", "refluxo")
    sample = sample.replace("${data.google_project.this.number}", "123456789012")
    sample = sample.replace("${var.region}", "europe-west1")
    assert sample == "https://refluxo-dispatcher-123456789012.europe-west1.run.app"
    dispatcher = config.resource("google_cloudfunctions2_function", "dispatcher")
    expressions = list(interpolations(config.resolve(dispatcher)))
    assert not [e for e in expressions if "google_cloudfunctions2_function.dispatcher" in e]


def _references(config: TerraformConfig, body: Any) -> set[str]:
    """Resource / data addresses a body refers to, locals expanded."""
    found: set[str] = set()
    declared = {f"{t}.{n}" for t, n, _ in config.iter_resources()}
    declared |= {f"data.{t}.{n}" for t, instances in config.data.items() for n in instances}
    for expression in interpolations(config.resolve(body)):
        for match in re.finditer(r"(?<![\w.])((?:data\.)?[a-z0-9_]+\.[a-z0-9_]+)", expression):
            if match.group(1) in declared:
                found.add(match.group(1))
    return found


def test_the_configuration_has_no_dependency_cycle(config: TerraformConfig) -> None:
    graph: dict[str, set[str]] = {}
    for type_name, name, body in config.iter_resources():
        graph[f"{type_name}.{name}"] = _references(config, body)
    for type_name, instances in config.data.items():
        for name, body in instances.items():
            graph[f"data.{type_name}.{name}"] = _references(config, body)
    assert graph["google_pubsub_subscription.events"] >= {"google_cloudfunctions2_function.events"}
    assert graph["google_cloudfunctions2_function.api"] >= {"time_sleep.iam"}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, f"cycle: {' -> '.join([*visiting, node])}"
        visiting.append(node)
        for target in sorted(graph[node]):
            visit(target)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


# --- Pub/Sub and dead-lettering --------------------------------------------------------------


def test_topics(config: TerraformConfig) -> None:
    runs = config.resource("google_pubsub_topic", "runs")
    assert runs["name"] == "${var.name}-runs"
    dead = config.resource("google_pubsub_topic", "runs_dead_letter")
    assert dead["name"] == "${var.name}-runs-dead-letter"


def test_events_are_pushed_by_a_subscription_that_dead_letters(config: TerraformConfig) -> None:
    events_uri = "${google_cloudfunctions2_function.events.service_config[0].uri}"
    subscription = config.resource("google_pubsub_subscription", "events")
    assert subscription["topic"] == "${google_pubsub_topic.runs.id}"
    push = single(subscription, "push_config")
    assert push["push_endpoint"].startswith(events_uri + "/")
    assert single(push, "oidc_token") == {
        "service_account_email": "${google_service_account.events_trigger.email}",
        "audience": events_uri,
    }
    policy = single(subscription, "dead_letter_policy")
    assert policy["dead_letter_topic"] == "${google_pubsub_topic.runs_dead_letter.id}"
    assert policy["max_delivery_attempts"] == "${var.events_max_delivery_attempts}"
    assert 5 <= variable_default(config, "events_max_delivery_attempts") <= 100
    retry = single(subscription, "retry_policy")
    assert set(retry) == {"minimum_backoff", "maximum_backoff"}
    assert single(subscription, "expiration_policy") == {"ttl": ""}
    # Pub/Sub waits up to the ack deadline for the push answer (10-600 s), and pushes the
    # message again past it: the events function must answer (or time out) within it.
    for timeout in (5, 60, 600, 601, 1700):
        evaluator = Evaluator(
            config, {"project_id": PROJECT_ID, "function_timeout_seconds": timeout}
        )
        deadline = evaluator.evaluate(subscription["ack_deadline_seconds"])
        assert 10 <= deadline <= 600
        assert evaluator.local("events_timeout_s") <= deadline
        assert evaluator.local("events_timeout_s") == min(timeout, 600)


def test_no_eventarc_trigger_would_deliver_a_second_copy(config: TerraformConfig) -> None:
    # The push subscription replaces the Eventarc trigger (Terraform cannot dead-letter an
    # Eventarc-owned subscription); having both would run every message twice.
    for name, body in config.resources["google_cloudfunctions2_function"].items():
        assert "event_trigger" not in body, name
    assert "google_eventarc_trigger" not in config.resources


def test_dead_letters_are_kept(config: TerraformConfig) -> None:
    subscription = config.resource("google_pubsub_subscription", "dead_letter")
    assert subscription["topic"] == "${google_pubsub_topic.runs_dead_letter.id}"
    assert subscription["message_retention_duration"] == "604800s"
    assert single(subscription, "expiration_policy") == {"ttl": ""}
    assert "push_config" not in subscription  # a pull subscription: messages wait there


def test_pubsub_service_agent_is_created_before_it_is_granted(config: TerraformConfig) -> None:
    identity = config.resource("google_project_service_identity", "pubsub")
    # Only google-beta has the resource in provider 6.x.
    assert provider_of("google_project_service_identity", identity) == "google-beta"
    assert identity["service"] == "pubsub.googleapis.com"
    assert identity["project"] == "${var.project_id}"
    assert identity["depends_on"] == ["${time_sleep.apis}"]
    assert config.locals["pubsub_service_agent"] == (
        "${google_project_service_identity.pubsub.member}"
    )
