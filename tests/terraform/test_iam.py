"""Every IAM grant of the deployment: exactly the least-privilege set, nothing public."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.terraform.hcl_config import TERRAFORM_DIR, TerraformConfig

RUNTIME = "serviceAccount:${google_service_account.runtime.email}"
INVOKER = "serviceAccount:${google_service_account.tasks_invoker.email}"
TRIGGER = "serviceAccount:${google_service_account.events_trigger.email}"
PUBSUB_AGENT = (
    "serviceAccount:service-${data.google_project.this.number}"
    "@gcp-sa-pubsub.iam.gserviceaccount.com"
)
API_MEMBERS = "each of var.api_invoker_members"
PROJECT = "project"

# The argument naming the resource a non-project grant is on, per IAM resource type.
TARGET_ARGUMENT = {
    "google_cloud_tasks_queue_iam_member": "name",
    "google_service_account_iam_member": "service_account_id",
    "google_secret_manager_secret_iam_member": "secret_id",
    "google_cloud_run_v2_service_iam_member": "name",
    "google_cloud_run_service_iam_member": "service",
    "google_pubsub_topic_iam_member": "topic",
    "google_pubsub_subscription_iam_member": "subscription",
}
PROJECT_LEVEL = {"google_project_iam_member", "google_project_iam_binding"}
IAM_TYPE = re.compile(r"_iam_(member|binding|policy|audit_config)$")
PUBLIC = {"allUsers", "allAuthenticatedUsers"}
PRIMITIVE = {"roles/owner", "roles/editor", "roles/viewer"}

EXPECTED = {
    (RUNTIME, "roles/datastore.user", PROJECT),
    (RUNTIME, "roles/logging.logWriter", PROJECT),
    (RUNTIME, "roles/cloudtasks.enqueuer", "google_cloud_tasks_queue.steps"),
    (RUNTIME, "roles/iam.serviceAccountUser", "google_service_account.tasks_invoker"),
    (RUNTIME, "roles/secretmanager.secretAccessor", "google_secret_manager_secret.api_key"),
    (INVOKER, "roles/run.invoker", "google_cloudfunctions2_function.dispatcher"),
    (TRIGGER, "roles/run.invoker", "google_cloudfunctions2_function.events"),
    (API_MEMBERS, "roles/run.invoker", "google_cloudfunctions2_function.api"),
    (PUBSUB_AGENT, "roles/pubsub.publisher", "google_pubsub_topic.runs_dead_letter"),
    (PUBSUB_AGENT, "roles/pubsub.subscriber", "google_pubsub_subscription.events"),
    (PUBSUB_AGENT, "roles/iam.serviceAccountTokenCreator", "google_service_account.events_trigger"),
}


@dataclass(frozen=True)
class Grant:
    address: str
    member: str
    role: str
    scope: str


def grants(config: TerraformConfig) -> list[Grant]:
    """Every IAM resource as (member, role, scope); fails on a kind it cannot place."""
    found: list[Grant] = []
    for type_name, name, body in config.iter_resources():
        if not IAM_TYPE.search(type_name):
            continue
        address = f"{type_name}.{name}"
        assert type_name.endswith("_iam_member"), (
            f"{address}: only additive *_iam_member grants are used; bindings and policies "
            "are authoritative and would remove grants made elsewhere"
        )
        member = config.resolve(body["member"])
        if member == "${each.value}":
            assert body.get("for_each") == "${toset(var.api_invoker_members)}", address
            member = API_MEMBERS
        if type_name in PROJECT_LEVEL:
            assert body["project"] == "${var.project_id}", address
            scope = PROJECT
        else:
            assert type_name in TARGET_ARGUMENT, f"{address}: unknown IAM resource type"
            target = body[TARGET_ARGUMENT[type_name]]
            match = re.fullmatch(r"\$\{([a-z0-9_]+\.[a-z0-9_]+)(?:\.[a-z_]+|\[0\])*\}", target)
            assert match, f"{address}: grant is not on a resource of this configuration: {target}"
            scope = match.group(1)
        found.append(Grant(address, member, body["role"], scope))
    return found


def test_the_exact_set_of_grants(config: TerraformConfig) -> None:
    actual = {(g.member, g.role, g.scope) for g in grants(config)}
    missing = EXPECTED - actual
    extra = actual - EXPECTED
    assert not missing, f"missing: {sorted(missing)}"
    assert not extra, f"not expected: {sorted(extra)}"
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


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        ("roles/cloudtasks.enqueuer", "google_cloud_tasks_queue.steps"),
        ("roles/iam.serviceAccountUser", "google_service_account.tasks_invoker"),
        ("roles/secretmanager.secretAccessor", "google_secret_manager_secret.api_key"),
    ],
)
def test_runtime_grants_are_scoped_not_project_wide(
    config: TerraformConfig, role: str, scope: str
) -> None:
    runtime = [g for g in grants(config) if g.member == RUNTIME and g.role == role]
    assert [g.scope for g in runtime] == [scope]


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
        "runtime": "${var.name}-runtime",
        "tasks_invoker": "${var.name}-tasks-invoker",
        "events_trigger": "${var.name}-events-trigger",
    }
