"""Every IAM grant of the deployment: exactly the least-privilege set, nothing public."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.terraform.conftest import PROJECT_ID
from tests.terraform.hcl_config import TERRAFORM_DIR, TerraformConfig, single
from tests.terraform.hcl_eval import Evaluator

API = "serviceAccount:${google_service_account.api.email}"
DISPATCHER = "serviceAccount:${google_service_account.dispatcher.email}"
EVENTS = "serviceAccount:${google_service_account.events.email}"
INVOKER = "serviceAccount:${google_service_account.tasks_invoker.email}"
TRIGGER = "serviceAccount:${google_service_account.events_trigger.email}"
BUILD = "serviceAccount:${google_service_account.build.email}"
PUBSUB_AGENT = "${google_project_service_identity.pubsub.member}"
API_MEMBERS = "each of var.api_invoker_members"
FUNCTION_ACCOUNTS = (API, DISPATCHER, EVENTS)
PROJECT = "project"

# Conditions, by what they restrict the grant to.
DATABASE = "the deployment's Firestore database"
STAGED_SOURCES = "the Cloud Functions staging bucket"
CONDITIONS = {
    DATABASE: (
        'resource.name == "projects/my-project/databases/${google_firestore_database.default.name}"'
    ),
    STAGED_SOURCES: (
        'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-'
        '${data.google_project.this.number}-europe-west1")'
    ),
}

# The argument naming the resource a non-project grant is on, per IAM resource type.
TARGET_ARGUMENT = {
    "google_cloud_tasks_queue_iam_member": "name",
    "google_service_account_iam_member": "service_account_id",
    "google_secret_manager_secret_iam_member": "secret_id",
    "google_cloud_run_v2_service_iam_member": "name",
    "google_cloud_run_service_iam_member": "service",
    "google_pubsub_topic_iam_member": "topic",
    "google_pubsub_subscription_iam_member": "subscription",
    "google_storage_bucket_iam_member": "bucket",
}
PROJECT_LEVEL = {"google_project_iam_member", "google_project_iam_binding"}
IAM_TYPE = re.compile(r"_iam_(member|binding|policy|audit_config)$")
PUBLIC = {"allUsers", "allAuthenticatedUsers"}
PRIMITIVE = {"roles/owner", "roles/editor", "roles/viewer"}

EXPECTED = {
    *(
        grant
        for account in FUNCTION_ACCOUNTS
        for grant in (
            (account, "roles/datastore.user", PROJECT, DATABASE),
            (account, "roles/logging.logWriter", PROJECT, None),
            (account, "roles/cloudtasks.enqueuer", "google_cloud_tasks_queue.steps", None),
            # GetTask tells a queued task from a tombstone after ALREADY_EXISTS.
            (account, "roles/cloudtasks.viewer", "google_cloud_tasks_queue.steps", None),
            (
                account,
                "roles/iam.serviceAccountUser",
                "google_service_account.tasks_invoker",
                None,
            ),
        )
    ),
    (API, "roles/secretmanager.secretAccessor", "google_secret_manager_secret.api_key", None),
    (BUILD, "roles/logging.logWriter", PROJECT, None),
    (BUILD, "roles/artifactregistry.writer", PROJECT, None),
    (BUILD, "roles/storage.objectViewer", "google_storage_bucket.source", None),
    (BUILD, "roles/storage.objectViewer", PROJECT, STAGED_SOURCES),
    (INVOKER, "roles/run.invoker", "google_cloudfunctions2_function.dispatcher", None),
    (TRIGGER, "roles/run.invoker", "google_cloudfunctions2_function.events", None),
    (API_MEMBERS, "roles/run.invoker", "google_cloudfunctions2_function.api", None),
    (PUBSUB_AGENT, "roles/pubsub.publisher", "google_pubsub_topic.runs_dead_letter", None),
    (PUBSUB_AGENT, "roles/pubsub.subscriber", "google_pubsub_subscription.events", None),
    (
        PUBSUB_AGENT,
        "roles/iam.serviceAccountTokenCreator",
        "google_service_account.events_trigger",
        None,
    ),
}


@dataclass(frozen=True)
class Grant:
    address: str
    member: str
    role: str
    scope: str
    condition: str | None  # the condition's name in CONDITIONS, None without one


def _members(config: TerraformConfig, address: str, body: dict[str, object]) -> list[str]:
    """The member(s) of one IAM resource, its for_each expanded."""
    member = config.resolve(body["member"])
    if member != "${each.value}":
        assert "for_each" not in body, f"{address}: for_each without each.value"
        return [str(member)]
    if body.get("for_each") == "${toset(var.api_invoker_members)}":
        return [API_MEMBERS]
    assert body.get("for_each") == "${local.function_members}", address
    members = config.locals["function_members"]
    assert isinstance(members, dict)
    return [str(config.resolve(value)) for value in members.values()]


def _condition(evaluator: Evaluator, address: str, body: dict[str, object]) -> str | None:
    if "condition" not in body:
        return None
    condition = single(body, "condition")
    assert condition["title"], address
    assert condition["description"], address
    expression = evaluator.evaluate(condition["expression"])
    names = [name for name, known in CONDITIONS.items() if known == expression]
    assert names, f"{address}: unexpected condition {expression}"
    return names[0]


def grants(config: TerraformConfig) -> list[Grant]:
    """Every IAM grant as (member, role, scope, condition); fails on a kind it cannot place."""
    evaluator = Evaluator(config, {"project_id": PROJECT_ID})
    found: list[Grant] = []
    for type_name, name, body in config.iter_resources():
        if not IAM_TYPE.search(type_name):
            continue
        address = f"{type_name}.{name}"
        assert type_name.endswith("_iam_member"), (
            f"{address}: only additive *_iam_member grants are used; bindings and policies "
            "are authoritative and would remove grants made elsewhere"
        )
        if type_name in PROJECT_LEVEL:
            assert body["project"] == "${var.project_id}", address
            scope = PROJECT
        else:
            assert type_name in TARGET_ARGUMENT, f"{address}: unknown IAM resource type"
            target = body[TARGET_ARGUMENT[type_name]]
            match = re.fullmatch(r"\$\{([a-z0-9_]+\.[a-z0-9_]+)(?:\.[a-z_]+|\[0\])*\}", target)
            assert match, f"{address}: grant is not on a resource of this configuration: {target}"
            scope = match.group(1)
        condition = _condition(evaluator, address, body)
        for member in _members(config, address, body):
            found.append(Grant(address, member, body["role"], scope, condition))
    return found


def test_the_exact_set_of_grants(config: TerraformConfig) -> None:
    actual = {(g.member, g.role, g.scope, g.condition) for g in grants(config)}
    missing = EXPECTED - actual
    extra = actual - EXPECTED
    assert not missing, f"missing: {sorted(missing, key=str)}"
    assert not extra, f"not expected: {sorted(extra, key=str)}"
    assert len(grants(config)) == len(EXPECTED), "a grant is declared twice"


def test_nothing_is_public(config: TerraformConfig) -> None:
    for grant in grants(config):
        assert grant.member not in PUBLIC, grant
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(TERRAFORM_DIR.glob("*.tf")))
    for name in PUBLIC:
        # The only mention is the validation that refuses them in api_invoker_members.
        lines = [
            line for line in text.splitlines() if name in line and not line.strip().startswith("#")
        ]
        assert all("contains(" in line or "error_message" in line for line in lines), lines


def test_no_primitive_roles(config: TerraformConfig) -> None:
    for grant in grants(config):
        assert grant.role not in PRIMITIVE, grant


def test_only_the_api_account_can_read_the_api_key(config: TerraformConfig) -> None:
    readers = {
        g.member
        for g in grants(config)
        if g.scope == "google_secret_manager_secret.api_key" or "secretmanager" in g.role
    }
    assert readers == {API}
    # In particular the dispatcher, which runs the workflows' node code, cannot.
    assert DISPATCHER not in readers
    assert EVENTS not in readers


def test_firestore_access_is_conditioned_on_the_database(config: TerraformConfig) -> None:
    firestore = [g for g in grants(config) if g.role.startswith("roles/datastore.")]
    assert {g.member for g in firestore} == set(FUNCTION_ACCOUNTS)
    for grant in firestore:
        assert grant.scope == PROJECT
        assert grant.condition == DATABASE, grant


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        ("roles/cloudtasks.enqueuer", "google_cloud_tasks_queue.steps"),
        ("roles/cloudtasks.viewer", "google_cloud_tasks_queue.steps"),
        ("roles/iam.serviceAccountUser", "google_service_account.tasks_invoker"),
    ],
)
@pytest.mark.parametrize("account", FUNCTION_ACCOUNTS)
def test_function_grants_are_scoped_not_project_wide(
    config: TerraformConfig, role: str, scope: str, account: str
) -> None:
    found = [g for g in grants(config) if g.member == account and g.role == role]
    assert [g.scope for g in found] == [scope]


def test_each_function_runs_as_its_own_account(config: TerraformConfig) -> None:
    functions = config.resources["google_cloudfunctions2_function"]
    accounts = {
        name: single(body, "service_config")["service_account_email"]
        for name, body in functions.items()
    }
    assert accounts == {
        "api": "${google_service_account.api.email}",
        "dispatcher": "${google_service_account.dispatcher.email}",
        "events": "${google_service_account.events.email}",
    }
    members = config.locals["function_members"]
    assert {name: config.resolve(value) for name, value in members.items()} == {
        "api": API,
        "dispatcher": DISPATCHER,
        "events": EVENTS,
    }


def test_the_build_account_holds_what_a_function_build_needs(config: TerraformConfig) -> None:
    build = {(g.role, g.scope, g.condition) for g in grants(config) if g.member == BUILD}
    assert build == {
        ("roles/logging.logWriter", PROJECT, None),
        ("roles/artifactregistry.writer", PROJECT, None),
        ("roles/storage.objectViewer", "google_storage_bucket.source", None),
        ("roles/storage.objectViewer", PROJECT, STAGED_SOURCES),
    }
    for body in config.resources["google_cloudfunctions2_function"].values():
        assert single(body, "build_config")["service_account"] == (
            "${google_service_account.build.id}"
        )


@pytest.mark.parametrize(
    ("member", "function"),
    [(INVOKER, "dispatcher"), (TRIGGER, "events"), (API_MEMBERS, "api")],
)
def test_each_function_has_exactly_one_kind_of_invoker(
    config: TerraformConfig, member: str, function: str
) -> None:
    scope = f"google_cloudfunctions2_function.{function}"
    invokers = {
        g.member for g in grants(config) if g.role == "roles/run.invoker" and g.scope == scope
    }
    assert invokers == {member}
    for grant in grants(config):
        if grant.member in (INVOKER, TRIGGER):
            assert grant.role == "roles/run.invoker", grant


def test_run_invoker_grants_target_the_functions_run_service(config: TerraformConfig) -> None:
    for grant in grants(config):
        if grant.role != "roles/run.invoker":
            continue
        type_name, name = grant.address.split(".")
        body = config.resource(type_name, name)
        assert body["name"].endswith(".service_config[0].service}"), grant
        assert body["location"] == "${var.region}"


def test_service_accounts(config: TerraformConfig) -> None:
    accounts = config.resources["google_service_account"]
    ids = {name: body["account_id"] for name, body in accounts.items()}
    assert ids == {
        "api": "${var.name}-api",
        "dispatcher": "${var.name}-dispatcher",
        "events": "${var.name}-events",
        "tasks_invoker": "${var.name}-tasks-invoker",
        "events_trigger": "${var.name}-events-trigger",
        "build": "${var.name}-build",
    }
    for name, body in accounts.items():
        assert body["depends_on"] == ["${time_sleep.apis}"], name
