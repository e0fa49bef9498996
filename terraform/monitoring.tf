# What an operator is told about. The functions log one JSON object per line; Cloud
# Logging keeps it as jsonPayload with the fields severity, message, event ("step",
# "run_failed", "run_cancelled", "run_stalled", "attempt_failed"), runId, workflow, node, version, outcome
# and logging.googleapis.com/trace. Two log-based metrics count failed and stalled runs
# per workflow; three alert policies watch them and the dead-letter subscription, and
# notify var.alert_emails (none: the incidents are still opened in Cloud Monitoring).

locals {
  # The log entries of this deployment's three functions (Cloud Run revisions).
  functions_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(\"${local.api_name}\" OR \"${local.dispatcher_name}\" OR \"${local.events_name}\")",
  ])

  notification_channels = [for channel in google_monitoring_notification_channel.email : channel.id]
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  project      = var.project_id
  display_name = "${var.name} alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
  user_labels = local.labels

  depends_on = [time_sleep.apis]
}

resource "google_logging_metric" "failed_runs" {
  project     = var.project_id
  name        = "${var.name}/failed_runs"
  description = "Runs of the ${var.name} deployment that ended failed (event run_failed), by workflow."
  filter      = "${local.functions_log_filter} AND jsonPayload.event=\"run_failed\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name} failed runs"

    labels {
      key         = "workflow"
      value_type  = "STRING"
      description = "The run's workflow."
    }
  }

  label_extractors = {
    workflow = "EXTRACT(jsonPayload.workflow)"
  }

  depends_on = [time_sleep.apis]
}

resource "google_logging_metric" "stalled_runs" {
  project     = var.project_id
  name        = "${var.name}/stalled_runs"
  description = "Runs of the ${var.name} deployment the reconciler found overdue and re-enqueued (event run_stalled), by workflow."
  filter      = "${local.functions_log_filter} AND jsonPayload.event=\"run_stalled\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name} stalled runs"

    labels {
      key         = "workflow"
      value_type  = "STRING"
      description = "The run's workflow."
    }
  }

  label_extractors = {
    workflow = "EXTRACT(jsonPayload.workflow)"
  }

  depends_on = [time_sleep.apis]
}

# Cloud Monitoring learns of a new log-based metric a little after Cloud Logging creates it;
# an alert policy created at once on it can be refused as naming an unknown metric.
resource "time_sleep" "log_metrics" {
  create_duration = "60s"

  depends_on = [
    google_logging_metric.failed_runs,
    google_logging_metric.stalled_runs,
  ]
}

resource "google_monitoring_alert_policy" "failed_runs" {
  project               = var.project_id
  display_name          = "${var.name}: runs failed"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "More than ${var.alert_failed_runs_threshold} failed runs in 5 minutes"

    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.failed_runs.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_failed_runs_threshold
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.workflow"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: runs failed"
    content   = "Runs of the workflow in the incident's `workflow` label ended failed. Find them in Cloud Logging with `jsonPayload.event=\"run_failed\"` (the entries carry runId, node and the reason), or list them with `GET /runs?status=failed`."
  }
}

resource "google_monitoring_alert_policy" "stalled_runs" {
  project               = var.project_id
  display_name          = "${var.name}: runs stalled"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "A run's next step was overdue"

    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.stalled_runs.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.workflow"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [time_sleep.log_metrics]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: runs stalled"
    content   = "The reconciler found runs whose next step was overdue (its task was deleted after its last attempt, or an enqueue was lost) and enqueued the step again. Look for `jsonPayload.event=\"run_stalled\"` in Cloud Logging, and for failed task attempts in the `${var.name}-steps` queue's logs."
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "${var.name}: dead-lettered messages"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "Messages waiting on ${google_pubsub_subscription.dead_letter.name}"

    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [time_sleep.apis]

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name}: dead-lettered messages"
    content   = "Start / resume / cancel messages failed ${var.events_max_delivery_attempts} deliveries to the events function and wait on the `${google_pubsub_subscription.dead_letter.name}` subscription (kept 7 days). Inspect them with `gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letter.name} --limit 10` (without --auto-ack), fix the cause, republish them to the runs topic and acknowledge them."
  }
}
