# The reconciler: every var.reconcile_schedule (5 minutes by default) Cloud Scheduler posts
# to the dispatcher's /tasks/reconcile with an OIDC token of the tasks invoker account
# (audience: the dispatcher URL, as for step tasks). The dispatcher looks for runs whose
# next step is overdue (a task deleted after its last attempt, an enqueue lost to a crash),
# logs each as run_stalled and enqueues its step again.
resource "google_cloud_scheduler_job" "reconcile" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name}-reconcile"
  description = "Re-enqueue the ${var.name} runs whose next step is overdue."
  schedule    = var.reconcile_schedule
  time_zone   = "Etc/UTC"

  # As long as Cloud Tasks waits for a step: the reconciler runs in the same function.
  attempt_deadline = "${local.tasks_dispatch_deadline_s}s"

  # A failed run is not retried: the next one comes at the next tick.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = local.reconcile_url
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.tasks_invoker.email
      audience              = local.dispatcher_url
    }
  }

  depends_on = [
    time_sleep.apis,
    google_cloud_run_v2_service_iam_member.dispatcher_tasks_invoker,
  ]
}
