"""The configuration against the committed provider schema (the offline ``validate``)."""

from __future__ import annotations

import json

import pytest

from tests.terraform.hcl_config import SCHEMA_PATH, TERRAFORM_DIR
from tests.terraform.schema_check import Problem, Schemas, check_directory, check_documents, parse


def problems_of(snippet: str, schemas: Schemas) -> list[str]:
    return [str(p) for p in check_documents([parse(snippet)], schemas)]


def test_terraform_configuration_matches_the_provider_schema() -> None:
    problems = check_directory(TERRAFORM_DIR, SCHEMA_PATH)
    assert problems == [], "terraform validate would fail:\n" + "\n".join(map(str, problems))


def test_unknown_argument_and_missing_required_argument_are_both_reported(
    schemas: Schemas,
) -> None:
    found = problems_of(
        """
        resource "google_pubsub_topic" "typo" {
          name           = "t"
          retention_days = 3
        }
        resource "google_pubsub_subscription" "incomplete" {
          name = "s"
        }
        """,
        schemas,
    )
    assert found == [
        "google_pubsub_subscription.incomplete: topic: missing required argument",
        "google_pubsub_topic.typo: retention_days: unsupported argument",
    ]


def test_problems_inside_nested_blocks_carry_their_path(schemas: Schemas) -> None:
    found = problems_of(
        """
        resource "google_cloud_tasks_queue" "q" {
          name     = "q"
          location = "europe-west1"
          rate_limits {
            max_burst_size = 10
          }
          stackdriver_logging_config {}
          retry_config {
            max_attempt = 3
          }
        }
        """,
        schemas,
    )
    assert found == [
        "google_cloud_tasks_queue.q: rate_limits[0].max_burst_size: read-only (computed) attribute",
        "google_cloud_tasks_queue.q: retry_config[0].max_attempt: unsupported argument",
        "google_cloud_tasks_queue.q: stackdriver_logging_config[0].sampling_ratio: "
        "missing required argument",
    ]


def test_blocks_and_arguments_are_not_interchangeable(schemas: Schemas) -> None:
    found = problems_of(
        """
        resource "google_storage_bucket" "b" {
          name       = "b"
          location   = "EU"
          versioning = { enabled = true }
          labels {
            a = "b"
          }
          lifecycle_rules {
          }
        }
        """,
        schemas,
    )
    assert found == [
        "google_storage_bucket.b: labels: is an argument: write `labels = ...`, not a block",
        "google_storage_bucket.b: lifecycle_rules: unsupported block type",
        "google_storage_bucket.b: versioning: is a block: write `versioning { ... }`, "
        "not an argument",
    ]


def test_block_counts_are_checked(schemas: Schemas) -> None:
    found = problems_of(
        """
        resource "google_firestore_index" "i" {
          collection = "c"
        }
        resource "google_secret_manager_secret" "s" {
          secret_id = "s"
          replication {
            auto {}
          }
          replication {
            auto {}
          }
        }
        """,
        schemas,
    )
    assert found == [
        "google_firestore_index.i: fields: at least 1 block(s) required",
        "google_secret_manager_secret.s: replication: at most 1 block(s), got 2",
    ]


def test_meta_arguments_and_dynamic_blocks_are_understood(schemas: Schemas) -> None:
    found = problems_of(
        """
        resource "google_pubsub_topic" "t" {
          for_each   = toset(["a"])
          name       = each.key
          depends_on = []
          lifecycle {
            prevent_destroy = true
          }
        }
        resource "google_firestore_index" "i" {
          collection = "c"
          dynamic "fields" {
            for_each = ["a", "b"]
            content {
              field_path = fields.value
              ordr       = "ASCENDING"
            }
          }
        }
        """,
        schemas,
    )
    assert found == ["google_firestore_index.i: dynamic.fields.content.ordr: unsupported argument"]


def test_unknown_types_and_bad_references_are_reported(schemas: Schemas) -> None:
    found = problems_of(
        """
        resource "google_pubsub_topc" "t" {
          name = "t"
        }
        resource "google_pubsub_topic" "ok" {
          name = "${var.missing}-${local.nothing}"
        }
        resource "google_pubsub_topic" "other" {
          name   = "other"
          labels = { a = google_pubsub_topic.ok.nme, b = google_pubsub_topic.gone.name }
        }
        data "google_projekt" "p" {}
        output "o" {
          value = data.google_project.nope.number
        }
        """,
        schemas,
    )
    assert found == [
        "data.google_projekt.p: data source not in the provider schema",
        "google_pubsub_topc.t: resource type not in the provider schema",
        "google_pubsub_topic.ok: reference to undeclared local value local.nothing",
        "google_pubsub_topic.ok: reference to undeclared variable var.missing",
        "google_pubsub_topic.other: google_pubsub_topic.ok has no attribute 'nme'",
        "google_pubsub_topic.other: reference to undeclared resource google_pubsub_topic.gone",
        "output.o: reference to undeclared data.google_project.nope",
    ]


def test_references_walk_into_nested_blocks(schemas: Schemas) -> None:
    found = problems_of(
        """
        resource "google_cloudfunctions2_function" "f" {
          name     = "f"
          location = "europe-west1"
        }
        output "good" {
          value = google_cloudfunctions2_function.f.service_config[0].uri
        }
        output "bad" {
          value = google_cloudfunctions2_function.f.service_config[0].url
        }
        """,
        schemas,
    )
    assert found == [
        "output.bad: google_cloudfunctions2_function.f has no attribute 'url'",
    ]


def test_problem_text_names_address_and_argument() -> None:
    assert str(Problem("google_x.y", "a[0].b", "unsupported argument")) == (
        "google_x.y: a[0].b: unsupported argument"
    )
    assert str(Problem("google_x.y", "", "resource type not in the provider schema")) == (
        "google_x.y: resource type not in the provider schema"
    )


def test_ephemeral_resources_and_write_only_arguments_are_checked(schemas: Schemas) -> None:
    found = problems_of(
        """
        ephemeral "random_password" "key" {
          lenght = 48
        }
        ephemeral "random_passwd" "other" {
          length = 8
        }
        resource "google_secret_manager_secret_version" "v" {
          secret                 = "s"
          secret_data_wo         = ephemeral.random_password.key.result
          secret_data_wo_version = ephemeral.random_password.key.resultt
        }
        output "o" {
          value = ephemeral.random_password.gone.result
        }
        """,
        schemas,
    )
    assert found == [
        "ephemeral.random_passwd.other: ephemeral resource type not in the provider schema",
        "ephemeral.random_password.key: lenght: unsupported argument",
        "ephemeral.random_password.key: length: missing required argument",
        "google_secret_manager_secret_version.v: "
        "ephemeral.random_password.key has no attribute 'resultt'",
        "output.o: reference to undeclared ephemeral.random_password.gone",
    ]


def test_a_resource_is_checked_against_the_provider_it_is_declared_with(
    schemas: Schemas,
) -> None:
    # google_project_service_identity exists only in google-beta (provider 6.x).
    found = problems_of(
        """
        resource "google_project_service_identity" "beta" {
          provider = google-beta
          service  = "pubsub.googleapis.com"
        }
        resource "google_project_service_identity" "ga" {
          service = "pubsub.googleapis.com"
        }
        resource "google_project_service_identity" "aliased" {
          provider = google-beta.other
          service  = "pubsub.googleapis.com"
          servce   = "x"
        }
        resource "widget_thing" "w" {}
        output "email" {
          value = google_project_service_identity.beta.member
        }
        output "bad" {
          value = google_project_service_identity.beta.membr
        }
        """,
        schemas,
    )
    assert found == [
        "google_project_service_identity.aliased: servce: unsupported argument",
        "google_project_service_identity.ga: resource type not in the provider schema",
        "output.bad: google_project_service_identity.beta has no attribute 'membr'",
        "widget_thing.w: resource type of provider 'widget', which is not in the schema",
    ]


def test_time_sleep_and_new_google_resources_are_checked(schemas: Schemas) -> None:
    found = problems_of(
        """
        resource "time_sleep" "wait" {
          create_duraton = "60s"
        }
        resource "google_cloud_scheduler_job" "job" {
          name = "j"
          http_target {
            http_method = "POST"
            oidc_token {
              audience = "a"
            }
          }
        }
        resource "google_firestore_field" "f" {
          collection = "c"
          field      = "f"
          ttl_config {
            state = "ACTIVE"
          }
        }
        resource "google_logging_metric" "m" {
          name = "m"
        }
        resource "google_monitoring_alert_policy" "p" {
          display_name = "p"
          combiner     = "OR"
        }
        resource "google_project_iam_member" "conditional" {
          project = "p"
          role    = "roles/datastore.user"
          member  = "user:a@b.example"
          condition {
            expression = "true"
          }
        }
        """,
        schemas,
    )
    assert found == [
        "google_cloud_scheduler_job.job: http_target[0].oidc_token[0].service_account_email: "
        "missing required argument",
        "google_cloud_scheduler_job.job: http_target[0].uri: missing required argument",
        "google_firestore_field.f: ttl_config[0].state: read-only (computed) attribute",
        "google_logging_metric.m: filter: missing required argument",
        "google_monitoring_alert_policy.p: conditions: at least 1 block(s) required",
        "google_project_iam_member.conditional: condition[0].title: missing required argument",
        "time_sleep.wait: create_duraton: unsupported argument",
    ]


@pytest.mark.parametrize(
    "source",
    [
        "registry.terraform.io/hashicorp/google",
        "registry.terraform.io/hashicorp/google-beta",
        "registry.terraform.io/hashicorp/archive",
        "registry.terraform.io/hashicorp/random",
        "registry.terraform.io/hashicorp/time",
    ],
)
def test_schema_file_records_its_provenance(source: str) -> None:
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    provider = document["provider_schemas"][source]
    assert provider["provider_version"]
    assert provider["extracted_from"].startswith("cdktf-cdktf-provider-")
    assert "provider" in provider


def test_hand_written_schemas_say_where_they_come_from() -> None:
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    written = {
        source: provider["hand_written"]
        for source, provider in document["provider_schemas"].items()
        if "hand_written" in provider
    }
    assert list(written) == ["registry.terraform.io/hashicorp/random"]
    (note,) = written["registry.terraform.io/hashicorp/random"].values()
    assert "ephemeral_password.go" in note
    random = document["provider_schemas"]["registry.terraform.io/hashicorp/random"]
    assert set(random["ephemeral_resource_schemas"]) == {"random_password"}
    attributes = random["ephemeral_resource_schemas"]["random_password"]["block"]["attributes"]
    assert attributes["length"] == {"required": True, "type": "number"}
    assert attributes["result"]["computed"]
    assert "optional" not in attributes["result"]


def test_google_schema_is_provider_6_from_a_pinned_16x_package() -> None:
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    google = document["provider_schemas"]["registry.terraform.io/hashicorp/google"]
    assert google["provider_version"].startswith("6.")
    assert google["extracted_from"].startswith("cdktf-cdktf-provider-google==16.")
