# The three Cloud Functions (2nd gen), built from the same source archive by the build
# account, each run as its own service account and serving only its own routes.

locals {
  # What every function reads (refluxo/host/settings.py). The dispatcher URL is computed
  # (see main.tf), so the dispatcher gets the same values without referring to itself.
  common_environment = {
    GOOGLE_CLOUD_PROJECT          = var.project_id
    REFLUXO_BACKEND               = "gcp"
    REFLUXO_APP                   = var.app
    REFLUXO_REGION                = var.region
    REFLUXO_TASKS_QUEUE           = google_cloud_tasks_queue.steps.name
    REFLUXO_STEP_URL              = local.step_url
    REFLUXO_TASKS_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
    REFLUXO_OIDC_AUDIENCE         = local.dispatcher_url
    REFLUXO_VERIFY_OIDC           = "true"
    REFLUXO_INVOKER_IAM           = "true"
    REFLUXO_FUNCTION_TIMEOUT_S    = tostring(var.function_timeout_seconds)
    REFLUXO_DISPATCH_DEADLINE_S   = tostring(local.tasks_dispatch_deadline_s)
    REFLUXO_COLLECTION_PREFIX     = var.name
    REFLUXO_FIRESTORE_DATABASE    = google_firestore_database.default.name
    REFLUXO_RUN_RETENTION_DAYS    = tostring(var.run_retention_days)
  }

  # The events function answers within Pub/Sub's ack deadline (at most 600 s): past it,
  # Pub/Sub would push the message again while the first push still runs.
  events_timeout_s = min(600, var.function_timeout_seconds)

  # Requests one instance serves at once (Cloud Run concurrency); the Functions
  # Framework's server gets as many threads (THREADS).
  concurrency = {
    api        = var.api_concurrency
    dispatcher = var.dispatcher_concurrency
    events     = var.events_concurrency
  }

  # REFLUXO_ROUTES: the routes a function serves, nothing else. "api": the callers' API;
  # "dispatcher": POST /tasks/step and POST /tasks/reconcile; "events": Pub/Sub pushes.
  function_environment = {
    api = merge(local.common_environment, {
      REFLUXO_ROUTES = "api"
      THREADS        = tostring(local.concurrency.api)
    })
    dispatcher = merge(local.common_environment, {
      REFLUXO_ROUTES                     = "dispatcher"
      THREADS                            = tostring(local.concurrency.dispatcher)
      REFLUXO_MAX_PLATFORM_RETRIES       = tostring(var.tasks_max_platform_retries)
      REFLUXO_RECONCILER_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
    })
    events = merge(local.common_environment, {
      REFLUXO_ROUTES = "events"
      THREADS        = tostring(local.concurrency.events)
    })
  }
}

# HTTP API: start, list, get, resume and cancel runs. Callers need roles/run.invoker (only
# var.api_invoker_members have it) AND the API key (checked in code): defense in depth.
resource "google_cloudfunctions2_function" "api" {
  #checkov:skip=CKV_GCP_124:The API is the deployment's entry point for callers outside Google Cloud; it is protected by IAM (run.invoker only for var.api_invoker_members, never allUsers) and by the API key checked in code. Restricting ingress would need a load balancer in front.
  project     = var.project_id
  name        = local.api_name
  location    = var.region
  description = "refluxo HTTP API (${var.name})"
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = "api"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.api.email
    timeout_seconds                  = var.function_timeout_seconds
    max_instance_count               = var.max_instances
    min_instance_count               = 0
    available_cpu                    = var.function_cpu
    available_memory                 = var.function_memory
    max_instance_request_concurrency = local.concurrency.api
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_environment.api

    secret_environment_variables {
      key        = "REFLUXO_API_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.api_key.secret_id
      version    = google_secret_manager_secret_version.api_key.version
    }
  }

  # Deployed once the accounts hold their grants and the grants have propagated.
  depends_on = [time_sleep.iam]
}

# Step dispatcher: POST /tasks/step from Cloud Tasks and POST /tasks/reconcile from Cloud
# Scheduler, both with an OIDC token of the tasks invoker account (IAM checks the token;
# the code checks it again).
resource "google_cloudfunctions2_function" "dispatcher" {
  project     = var.project_id
  name        = local.dispatcher_name
  location    = var.region
  description = "refluxo step dispatcher (${var.name}), called by Cloud Tasks and Cloud Scheduler"
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = "step"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.dispatcher.email
    timeout_seconds                  = var.function_timeout_seconds
    max_instance_count               = var.max_instances
    min_instance_count               = 0
    available_cpu                    = var.function_cpu
    available_memory                 = var.function_memory
    max_instance_request_concurrency = local.concurrency.dispatcher
    # Cloud Tasks, Cloud Scheduler and Pub/Sub push in the same project count as internal
    # traffic when they call the run.app URL, so nothing outside Google Cloud can reach it.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.function_environment.dispatcher
  }

  depends_on = [time_sleep.iam]
}

# Message handler: a CloudEvent function (entry point on_message) fed by the push
# subscription in pubsub.tf, which owns retries and dead-lettering (see the comment there
# for why this is not an Eventarc event_trigger).
resource "google_cloudfunctions2_function" "events" {
  project     = var.project_id
  name        = local.events_name
  location    = var.region
  description = "refluxo start/resume/cancel messages (${var.name}), pushed by Pub/Sub"
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = "on_message"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.events.email
    timeout_seconds                  = local.events_timeout_s
    max_instance_count               = var.max_instances
    min_instance_count               = 0
    available_cpu                    = var.function_cpu
    available_memory                 = var.function_memory
    max_instance_request_concurrency = local.concurrency.events
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_environment.events
  }

  depends_on = [time_sleep.iam]
}
