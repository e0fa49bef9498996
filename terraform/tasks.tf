# One HTTP task per workflow step, delivered to the dispatcher with an OIDC token of the
# tasks invoker account.
#
# Retries of a task are the platform's (the dispatcher did not answer 2xx: the instance
# crashed, the attempt ran past its deadline, the service answered 429/503...); a node's
# own failures are retried by the workflow's retry policy, with new tasks. The bound:
#
#   * Cloud Tasks waits min_backoff, doubling max_doublings times, then growing by
#     min_backoff * 2^max_doublings per retry, capped at max_backoff
#     (local.tasks_retry_waits_s lists the waits);
#   * the dispatcher receives X-CloudTasks-TaskRetryCount on each attempt; past
#     var.tasks_max_platform_retries (REFLUXO_MAX_PLATFORM_RETRIES) it no longer runs the
#     node but records the attempt as failed and applies the node's retry policy;
#   * the queue makes at most var.tasks_max_attempts attempts. Cloud Tasks retries until
#     BOTH max_attempts and max_retry_duration are reached, so max_retry_duration is set to
#     the time of the last attempt: the attempts are the bound, never a longer duration.
#
# With the defaults (1 s, 300 s, 8 doublings, 10 platform retries, 20 attempts) the
# dispatcher fails the node at the 12th attempt, 1111 s (18.5 min) after the first, and
# the queue deletes the task after the 20th, 3511 s (58.5 min) after the first (plus the
# time the attempts themselves take). terraform/README.md states the same numbers.

locals {
  # The wait before retry k (k = 1 .. max_attempts - 1), as Cloud Tasks computes it.
  tasks_retry_waits_s = [
    for k in range(1, var.tasks_max_attempts) :
    min(
      var.tasks_max_backoff_seconds,
      k <= var.tasks_max_doublings ? var.tasks_min_backoff_seconds * pow(2, k - 1) : var.tasks_min_backoff_seconds * pow(2, var.tasks_max_doublings) * (k - var.tasks_max_doublings),
    )
  ]

  # When the last attempt starts, counted from the first (attempts' own durations aside).
  tasks_last_attempt_s = sum(local.tasks_retry_waits_s)

  # When the attempt that fails the node starts: the one whose retry count is
  # tasks_max_platform_retries + 1.
  tasks_node_failed_s = sum(slice(local.tasks_retry_waits_s, 0, var.tasks_max_platform_retries + 1))

  # How long Cloud Tasks waits for the dispatcher's answer: the function timeout plus room
  # for a cold start, so that a slow step is never retried while it still runs.
  tasks_dispatch_deadline_s = var.function_timeout_seconds + var.tasks_dispatch_margin_seconds

  # Never more steps at once than the dispatcher can serve: every dispatch beyond its
  # capacity would come back as 429/503 and use up one of the task's attempts.
  tasks_max_concurrent_dispatches = var.max_instances * var.dispatcher_concurrency
}

resource "google_cloud_tasks_queue" "steps" {
  project  = var.project_id
  name     = "${var.name}-steps"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.tasks_max_dispatches_per_second
    max_concurrent_dispatches = local.tasks_max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.tasks_max_attempts
    max_retry_duration = "${local.tasks_last_attempt_s}s"
    min_backoff        = "${var.tasks_min_backoff_seconds}s"
    max_backoff        = "${var.tasks_max_backoff_seconds}s"
    max_doublings      = var.tasks_max_doublings
  }

  stackdriver_logging_config {
    sampling_ratio = var.tasks_log_sampling_ratio
  }

  depends_on = [time_sleep.apis]
}
