output "api_url" {
  description = "URL of the HTTP API (send an ID token of an api_invoker_members identity and the API key)."
  value       = google_cloudfunctions2_function.api.service_config[0].uri
}

output "dispatcher_url" {
  description = "The dispatcher's deterministic Cloud Run URL: the OIDC audience of step tasks (POST /tasks/step) and of the reconciler (POST /tasks/reconcile)."
  value       = local.dispatcher_url
}

output "events_topic" {
  description = "Pub/Sub topic to publish start/resume/cancel messages to."
  value       = google_pubsub_topic.runs.id
}

output "dead_letter_topic" {
  description = "Pub/Sub topic receiving messages the events function failed to handle after the maximum deliveries."
  value       = google_pubsub_topic.runs_dead_letter.id
}

output "dead_letter_subscription" {
  description = "Subscription holding the dead letters (7 days) for inspection and replay."
  value       = google_pubsub_subscription.dead_letter.id
}

output "tasks_queue" {
  description = "Cloud Tasks queue id (REFLUXO_TASKS_QUEUE)."
  value       = google_cloud_tasks_queue.steps.name
}

output "tasks_retry_bound" {
  description = "How long a step task is retried, in seconds from its first attempt (the attempts' own durations aside)."
  value = {
    max_attempts         = var.tasks_max_attempts
    last_attempt_after_s = local.tasks_last_attempt_s
    max_platform_retries = var.tasks_max_platform_retries
    node_failed_after_s  = local.tasks_node_failed_s
    dispatch_deadline_s  = local.tasks_dispatch_deadline_s
  }
}

output "reconcile_job" {
  description = "Cloud Scheduler job posting to the dispatcher's /tasks/reconcile."
  value       = google_cloud_scheduler_job.reconcile.id
}

output "api_key_secret" {
  description = "Secret Manager secret holding the API key (the id, never the value): gcloud secrets versions access latest --secret=<this>."
  value       = google_secret_manager_secret.api_key.id
}

output "service_accounts" {
  description = "Emails of the deployment's service accounts."
  value = {
    api            = google_service_account.api.email
    dispatcher     = google_service_account.dispatcher.email
    events         = google_service_account.events.email
    tasks_invoker  = google_service_account.tasks_invoker.email
    events_trigger = google_service_account.events_trigger.email
    build          = google_service_account.build.email
  }
}
