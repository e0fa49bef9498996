"""The deployment in ``terraform/``: every resource exists with its key settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.hcl_config import ROOT, TerraformConfig, interpolations, single

RUNTIME_EMAIL = "${google_service_account.runtime.email}"
INVOKER_EMAIL = "${google_service_account.tasks_invoker.email}"
DISPATCHER_URL = (
    "https://${var.name}-dispatcher-${data.google_project.this.number}.${var.region}.run.app"
)
FUNCTIONS = {"api": "api", "dispatcher": "step", "events": "on_message"}
EXPECTED_ENVIRONMENT = {
    "GOOGLE_CLOUD_PROJECT": "${var.project_id}",
    "REFLUXO_BACKEND": "gcp",
    "REFLUXO_APP": "${var.app}",
    "REFLUXO_REGION": "${var.region}",
    "REFLUXO_TASKS_QUEUE": "${google_cloud_tasks_queue.steps.name}",
    "REFLUXO_STEP_URL": f"{DISPATCHER_URL}/tasks/step",
    "REFLUXO_TASKS_SERVICE_ACCOUNT": INVOKER_EMAIL,
    "REFLUXO_OIDC_AUDIENCE": DISPATCHER_URL,
    "REFLUXO_VERIFY_OIDC": "true",
    "REFLUXO_FUNCTION_TIMEOUT_S": "${tostring(var.function_timeout_seconds)}",
    "REFLUXO_COLLECTION_PREFIX": "${var.name}",
}
REQUIRED_SERVICES = {
    "cloudfunctions",
    "run",
    "cloudbuild",
    "artifactregistry",
    "eventarc",
    "pubsub",
    "cloudtasks",
    "firestore",
    "secretmanager",
    "iam",
    "logging",
}


def quoted(expression: str) -> list[str]:
    """The string literals of an HCL expression, in order."""
    return re.findall(r'"([^"]*)"', expression)


def variable_default(config: TerraformConfig, name: str) -> Any:
    assert name in config.variables, f"variable {name} is not declared"
    return config.variables[name].get("default")


# --- providers, variables, outputs ---------------------------------------------------------


def test_required_providers_pin_google_6_archive_and_random(config: TerraformConfig) -> None:
    required: dict[str, Any] = {}
    for block in config.terraform:
        for entry in block.get("required_providers", []):
            required.update(entry)
    assert required["google"]["source"] == "hashicorp/google"
    assert required["google"]["version"] == "~> 6.0"
    assert required["archive"]["source"] == "hashicorp/archive"
    assert required["random"]["source"] == "hashicorp/random"
    assert set(required) == {"google", "archive", "random"}
    google = config.providers["google"]
    assert google["project"] == "${var.project_id}"
    assert google["region"] == "${var.region}"


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("region", "europe-west1"),
        ("name", "refluxo"),
        ("api_invoker_members", []),
        ("function_timeout_seconds", 60),
        ("app", "examples.app:app"),
    ],
)
def test_variable_defaults(config: TerraformConfig, name: str, default: Any) -> None:
    assert variable_default(config, name) == default


def test_project_and_max_instances_variables(config: TerraformConfig) -> None:
    assert "default" not in config.variables["project_id"], "project_id must be given"
    assert isinstance(variable_default(config, "max_instances"), int)


def test_source_dir_defaults_to_the_repository_root(config: TerraformConfig) -> None:
    # A variable default cannot use path.module, so null means "the repository root".
    assert variable_default(config, "source_dir") is None
    assert config.locals["source_dir"] == '${coalesce(var.source_dir, "${path.module}/..")}'
    archive = config.data["archive_file"]["source"]
    assert archive["source_dir"] == "${local.source_dir}"


def test_name_validation_keeps_derived_names_within_google_limits(
    config: TerraformConfig,
) -> None:
    condition = config.variables["name"]["validation"][0]["condition"]
    pattern = quoted(condition)[0]
    accepted = ["refluxo", "ab", "wf-prod-eu-0001", "x" * 15]
    rejected = ["Refluxo", "1abc", "-abc", "abc-", "x" * 16, "a_b", "a", ""]
    for name in accepted:
        assert re.fullmatch(pattern, name), name
        # service account ids are 6-30 characters; the longest suffix is -events-trigger
        assert len(f"{name}-events-trigger") <= 30
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
    required = {
        "api_url",
        "dispatcher_url",
        "events_topic",
        "dead_letter_topic",
        "tasks_queue",
        "api_key_secret",
    }
    assert required <= set(config.outputs)
    values = {name: body["value"] for name, body in config.outputs.items()}
    assert values["api_url"] == "${google_cloudfunctions2_function.api.service_config[0].uri}"
    assert values["dispatcher_url"] == "${local.dispatcher_url}"
    assert values["events_topic"] == "${google_pubsub_topic.runs.id}"
    assert values["dead_letter_topic"] == "${google_pubsub_topic.runs_dead_letter.id}"
    assert values["tasks_queue"] == "${google_cloud_tasks_queue.steps.name}"
    assert values["api_key_secret"] == "${google_secret_manager_secret.api_key.id}"
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


def test_firestore_index_for_listing_runs(config: TerraformConfig) -> None:
    index = config.resource("google_firestore_index", "runs_by_status")
    assert index["collection"] == "${var.name}_runs"
    assert index["database"] == "${google_firestore_database.default.name}"
    assert index["query_scope"] == "COLLECTION"
    fields = [(f["field_path"], f["order"]) for f in index["fields"]]
    assert fields == [("status", "ASCENDING"), ("createdAt", "DESCENDING")]


# --- Cloud Tasks -----------------------------------------------------------------------------


def test_tasks_queue(config: TerraformConfig) -> None:
    queue = config.resource("google_cloud_tasks_queue", "steps")
    assert queue["name"] == "${var.name}-steps"
    assert queue["location"] == "${var.region}"
    rates = single(queue, "rate_limits")
    assert rates["max_dispatches_per_second"] == "${var.tasks_max_dispatches_per_second}"
    assert rates["max_concurrent_dispatches"] == "${var.tasks_max_concurrent_dispatches}"
    retry = single(queue, "retry_config")
    assert retry["max_attempts"] == "${var.tasks_max_attempts}"
    assert variable_default(config, "tasks_max_attempts") == 100
    assert set(retry) >= {"max_retry_duration", "min_backoff", "max_backoff", "max_doublings"}
    assert re.fullmatch(r"\d+s", retry["min_backoff"])
    assert re.fullmatch(r"\d+s", retry["max_backoff"])
    assert int(retry["min_backoff"][:-1]) < int(retry["max_backoff"][:-1])
    logging = single(queue, "stackdriver_logging_config")
    assert logging["sampling_ratio"] == "${var.tasks_log_sampling_ratio}"
    assert 0 < variable_default(config, "tasks_log_sampling_ratio") <= 1


# --- source archive and bucket ---------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """The archive provider's doublestar globs, matched against a relative path."""
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def _archived(root: Path, excludes: list[str]) -> set[str]:
    """The relative paths the archive would hold: excluded directories are not entered."""
    patterns = [_glob_regex(p) for p in excludes]
    kept: set[str] = set()
    pending = [root]
    while pending:
        directory = pending.pop()
        for entry in directory.iterdir():
            relative = entry.relative_to(root).as_posix()
            if any(p.fullmatch(relative) for p in patterns):
                continue
            if entry.is_dir() and not entry.is_symlink():
                pending.append(entry)
            elif entry.is_file():
                kept.add(relative)
    return kept


def test_source_archive_holds_the_code_and_nothing_else(config: TerraformConfig) -> None:
    archive = config.data["archive_file"]["source"]
    assert archive["type"] == "zip"
    assert archive["output_path"].startswith("${path.module}/.terraform/")  # git-ignored
    excludes: list[str] = archive["excludes"]
    for pattern in (".venv*", "tests", "bench", "terraform", ".git", "**/__pycache__"):
        assert pattern in excludes
    files = _archived(ROOT, excludes)
    for needed in ("main.py", "requirements.txt", "refluxo/__init__.py", "examples/app.py"):
        assert needed in files
    tops = {path.split("/", 1)[0] for path in files}
    forbidden = {
        ".venv",
        ".venv-tasks",
        ".venv-checkov",
        ".git",
        "tests",
        "bench",
        "terraform",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
    }
    assert not tops & forbidden, sorted(tops & forbidden)
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


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


def test_api_key_secret_is_generated_without_a_manual_step(config: TerraformConfig) -> None:
    secret = config.resource("google_secret_manager_secret", "api_key")
    assert secret["secret_id"] == "${var.name}-api-key"
    assert single(single(secret, "replication"), "auto") == {}
    version = config.resource("google_secret_manager_secret_version", "api_key")
    assert version["secret"] == "${google_secret_manager_secret.api_key.id}"
    assert version["secret_data"] == "${random_password.api_key.result}"
    password = config.resource("random_password", "api_key")
    assert password["length"] >= 32


# --- functions -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "entry_point"), sorted(FUNCTIONS.items()))
def test_function(config: TerraformConfig, name: str, entry_point: str) -> None:
    function = config.resource("google_cloudfunctions2_function", name)
    assert config.resolve(function["name"]) == f"${{var.name}}-{name}"
    assert function["location"] == "${var.region}"
    build = single(function, "build_config")
    assert build["runtime"] == "python311"
    assert build["entry_point"] == entry_point
    storage = single(single(build, "source"), "storage_source")
    assert storage == {
        "bucket": "${google_storage_bucket.source.name}",
        "object": "${google_storage_bucket_object.source.name}",
    }
    service = single(function, "service_config")
    assert service["service_account_email"] == RUNTIME_EMAIL
    assert service["timeout_seconds"] == "${var.function_timeout_seconds}"
    assert service["max_instance_count"] == "${var.max_instances}"
    assert config.resolve(service["environment_variables"]) == EXPECTED_ENVIRONMENT


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
    # Pub/Sub waits up to the ack deadline for the push answer (10-600 s).
    assert "var.function_timeout_seconds" in subscription["ack_deadline_seconds"]


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


def test_pubsub_service_agent_address(config: TerraformConfig) -> None:
    assert config.locals["pubsub_service_agent"] == (
        "serviceAccount:service-${data.google_project.this.number}"
        "@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
