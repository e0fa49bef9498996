output "api_url" {
  description = "URL of the HTTP API (send an ID token of an api_invoker_members identity and the API key)."
  value       = google_cloudfunctions2_function.api.service_config[0].uri
}

output "dispatcher_url" {
  description = "The dispatcher's deterministic Cloud Run URL: the OIDC audience of step tasks (they POST to /tasks/step)."
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

output "api_key_secret" {
  description = "Secret Manager secret holding the API key (the id, never the value): gcloud secrets versions access latest --secret=<this>."
  value       = google_secret_manager_secret.api_key.id
}

output "runtime_service_account" {
  description = "Email of the functions' runtime service account."
  value       = google_service_account.runtime.email
}
