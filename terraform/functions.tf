# The three Cloud Functions (2nd gen), built from the same source archive and run as the
# runtime service account with the same environment.

locals {
  # What main.py reads. The dispatcher URL is computed (see main.tf), so the dispatcher gets
  # the same values as the others without referring to itself.
  function_environment = {
    GOOGLE_CLOUD_PROJECT          = var.project_id
    REFLUXO_BACKEND               = "gcp"
    REFLUXO_APP                   = var.app
    REFLUXO_REGION                = var.region
    REFLUXO_TASKS_QUEUE           = google_cloud_tasks_queue.steps.name
    REFLUXO_STEP_URL              = local.step_url
    REFLUXO_TASKS_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
    REFLUXO_OIDC_AUDIENCE         = local.dispatcher_url
    REFLUXO_VERIFY_OIDC           = "true"
    REFLUXO_FUNCTION_TIMEOUT_S    = tostring(var.function_timeout_seconds)
    REFLUXO_COLLECTION_PREFIX     = var.name
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
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.runtime.email
    timeout_seconds                = var.function_timeout_seconds
    max_instance_count             = var.max_instances
    min_instance_count             = 0
    available_memory               = var.function_memory
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    environment_variables          = local.function_environment

    secret_environment_variables {
      key        = "REFLUXO_API_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.api_key.secret_id
      version    = google_secret_manager_secret_version.api_key.version
    }
  }

  # Deployed once the APIs are on and the runtime account holds its grants (a deployment
  # checks the account can read the secrets it mounts).
  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.runtime_datastore_user,
    google_project_iam_member.runtime_log_writer,
    google_secret_manager_secret_iam_member.runtime_api_key_accessor,
  ]
}

# Step dispatcher: POST /tasks/step, called only by Cloud Tasks with an OIDC token of the
# tasks invoker account (IAM checks the token; the code checks it again).
resource "google_cloudfunctions2_function" "dispatcher" {
  project     = var.project_id
  name        = local.dispatcher_name
  location    = var.region
  description = "refluxo step dispatcher (${var.name}), called by Cloud Tasks"
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = "step"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.runtime.email
    timeout_seconds       = var.function_timeout_seconds
    max_instance_count    = var.max_instances
    min_instance_count    = 0
    available_memory      = var.function_memory
    # Cloud Tasks and Pub/Sub push in the same project count as internal traffic when they
    # call the run.app URL, so nothing outside Google Cloud can even reach this function.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.function_environment
  }

  # Deployed once the APIs are on and the runtime account holds its grants (a deployment
  # checks the account can read the secrets it mounts).
  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.runtime_datastore_user,
    google_project_iam_member.runtime_log_writer,
    google_secret_manager_secret_iam_member.runtime_api_key_accessor,
  ]
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
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.runtime.email
    timeout_seconds       = var.function_timeout_seconds
    max_instance_count    = var.max_instances
    min_instance_count    = 0
    available_memory      = var.function_memory
    # Cloud Tasks and Pub/Sub push in the same project count as internal traffic when they
    # call the run.app URL, so nothing outside Google Cloud can even reach this function.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.function_environment
  }

  # Deployed once the APIs are on and the runtime account holds its grants (a deployment
  # checks the account can read the secrets it mounts).
  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.runtime_datastore_user,
    google_project_iam_member.runtime_log_writer,
    google_secret_manager_secret_iam_member.runtime_api_key_accessor,
  ]
}
