# Start / resume / cancel messages, and what happens to the ones that keep failing.
#
# Dead-lettering design. A Cloud Functions event_trigger makes Eventarc create and own the
# push subscription; neither google_cloudfunctions2_function nor google_eventarc_trigger can
# set a dead-letter policy on it (only an out-of-band `gcloud pubsub subscriptions update`
# could, which Terraform would not track). So the events function is deployed without an
# event_trigger and this configuration owns the push subscription instead:
#   * google_pubsub_subscription.events pushes each message to the events function with an
#     OIDC token of the events-trigger account (the only account allowed to invoke it),
#     retries with exponential backoff, and after var.events_max_delivery_attempts failed
#     deliveries forwards the message to the dead-letter topic;
#   * the Pub/Sub service agent may publish to the dead-letter topic and subscribe to the
#     source subscription (both required for forwarding), and mint the push tokens of the
#     events-trigger account (needed in projects created before 2021-04-08);
#   * google_pubsub_subscription.dead_letter keeps the dead letters for inspection / replay.
# The function still receives a CloudEvent: the Functions Framework converts a Pub/Sub push
# envelope into a google.cloud.pubsub.topic.v1.messagePublished event for a function
# registered with @functions_framework.cloud_event (the decorator fixes the signature type).

# The Pub/Sub service agent (service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com).
# Google creates it some time after the API is enabled; creating it here means the grants in
# iam.tf never name an account that does not exist yet.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [time_sleep.apis]
}

resource "google_pubsub_topic" "runs" {
  #checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; the messages are control messages (workflow name, run id, input) and customer-managed keys would need a Cloud KMS key ring and service-agent grants outside this deployment.
  project = var.project_id
  name    = "${var.name}-runs"
  labels  = local.labels

  depends_on = [time_sleep.apis]
}

resource "google_pubsub_topic" "runs_dead_letter" {
  #checkov:skip=CKV_GCP_83:Same as the runs topic: Google-managed encryption; it only ever holds copies of the runs topic's messages.
  project = var.project_id
  name    = "${var.name}-runs-dead-letter"
  labels  = local.labels

  # Keep every dead letter on the topic for 31 days as well, so a new subscription can seek
  # back and replay them.
  message_retention_duration = "2678400s"

  depends_on = [time_sleep.apis]
}

resource "google_pubsub_subscription" "events" {
  project = var.project_id
  name    = "${var.name}-runs-events"
  topic   = google_pubsub_topic.runs.id
  labels  = local.labels

  # A delivery is outstanding until the function answers; give it the function's timeout
  # (which is at most 600 s, the longest ack deadline).
  ack_deadline_seconds       = max(10, local.events_timeout_s)
  message_retention_duration = "604800s"

  push_config {
    # The topic in the path becomes the CloudEvent source after the framework's conversion.
    push_endpoint = "${google_cloudfunctions2_function.events.service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.runs.name}"

    oidc_token {
      service_account_email = google_service_account.events_trigger.email
      audience              = google_cloudfunctions2_function.events.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.runs_dead_letter.id
    max_delivery_attempts = var.events_max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires, even without traffic
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.events_trigger_invoker,
    google_service_account_iam_member.pubsub_agent_token_creator,
    google_pubsub_topic_iam_member.pubsub_agent_dead_letter_publisher,
  ]
}

resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = "${var.name}-runs-dead-letter"
  topic   = google_pubsub_topic.runs_dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s" # the subscription maximum: 7 days

  expiration_policy {
    ttl = ""
  }
}
