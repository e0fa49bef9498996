# One HTTP task per workflow step, delivered to the dispatcher with an OIDC token of the
# tasks invoker account. Failed steps are retried with exponential backoff; the dispatcher
# itself decides when a step has failed for good, so the queue's limits are generous.
resource "google_cloud_tasks_queue" "steps" {
  project  = var.project_id
  name     = "${var.name}-steps"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.tasks_max_dispatches_per_second
    max_concurrent_dispatches = var.tasks_max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.tasks_max_attempts
    max_retry_duration = "86400s"
    min_backoff        = "1s"
    max_backoff        = "300s"
    max_doublings      = 8
  }

  stackdriver_logging_config {
    sampling_ratio = var.tasks_log_sampling_ratio
  }

  depends_on = [google_project_service.enabled]
}
