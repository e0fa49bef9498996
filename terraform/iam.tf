# Every IAM grant of the deployment, each on the narrowest resource that works. No
# primitive roles, nothing for allUsers / allAuthenticatedUsers, only additive members.
#
#   api, dispatcher, events SAs (one per function, for_each local.function_members)
#                     roles/datastore.user                 project, IAM condition: the
#                                                          deployment's Firestore database only
#                     roles/logging.logWriter              project
#                     roles/cloudtasks.enqueuer            the steps queue
#                     roles/cloudtasks.viewer              the steps queue (GetTask: a
#                                                          queued task or a tombstone)
#                     roles/iam.serviceAccountUser         the tasks invoker SA (act-as, so
#                                                          tasks carry the invoker's token)
#   api SA only       roles/secretmanager.secretAccessor   the API key secret
#   build SA          roles/logging.logWriter              project (build logs)
#                     roles/artifactregistry.writer        project (the images; Cloud
#                                                          Functions creates the repository)
#                     roles/storage.objectViewer           the source bucket
#                     roles/storage.objectViewer           project, IAM condition: the
#                                                          gcf-v2-sources bucket Cloud
#                                                          Functions stages sources in
#   tasks invoker SA  roles/run.invoker                    the dispatcher service (steps
#                                                          from Cloud Tasks, the reconciler
#                                                          from Cloud Scheduler)
#   events trigger SA roles/run.invoker                    the events service
#   api members       roles/run.invoker                    the api service
#   Pub/Sub agent     roles/pubsub.publisher               the dead-letter topic
#                     roles/pubsub.subscriber              the events push subscription
#                     roles/iam.serviceAccountTokenCreator the events trigger SA (push OIDC)

locals {
  # The one database the functions' Firestore role is valid for (IAM condition).
  firestore_database_resource = "projects/${var.project_id}/databases/${google_firestore_database.default.name}"
  # Where Cloud Functions (2nd gen) stages each function's source before Cloud Build reads it.
  staged_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

# --- the functions' service accounts -----------------------------------------------------

resource "google_project_iam_member" "function_datastore_user" {
  for_each = local.function_members

  project = var.project_id
  role    = "roles/datastore.user"
  member  = each.value

  # datastore.user is granted on the project (Firestore has no per-database IAM policy);
  # the condition makes it valid for this deployment's database only.
  condition {
    title       = "${var.name} Firestore database only"
    description = "Read and write documents of ${local.firestore_database_resource} only."
    expression  = "resource.name == \"${local.firestore_database_resource}\""
  }
}

resource "google_project_iam_member" "function_log_writer" {
  for_each = local.function_members

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = each.value
}

resource "google_cloud_tasks_queue_iam_member" "function_enqueuer" {
  for_each = local.function_members

  project  = var.project_id
  location = google_cloud_tasks_queue.steps.location
  name     = google_cloud_tasks_queue.steps.name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value
}

# Creating a task whose name the queue still remembers answers ALREADY_EXISTS; the
# scheduler then looks the task up (cloudtasks.tasks.get, not in the enqueuer role) to tell
# a queued task from a tombstone, and schedules a tombstoned delivery under a fresh name.
resource "google_cloud_tasks_queue_iam_member" "function_task_viewer" {
  for_each = local.function_members

  project  = var.project_id
  location = google_cloud_tasks_queue.steps.location
  name     = google_cloud_tasks_queue.steps.name
  role     = "roles/cloudtasks.viewer"
  member   = each.value
}

resource "google_service_account_iam_member" "function_act_as_tasks_invoker" {
  for_each = local.function_members

  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# Only the API function mounts the key, so only its account may read it: the dispatcher
# runs the workflows' node code and never sees the key.
resource "google_secret_manager_secret_iam_member" "api_key_accessor" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.api_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.api_member
}

# --- the build service account -----------------------------------------------------------

resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.build_member
}

resource "google_project_iam_member" "build_artifact_writer" {
  project = var.project_id
  role    = "roles/artifactregistry.writer"
  member  = local.build_member
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = local.build_member
}

resource "google_project_iam_member" "build_staged_source_reader" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = local.build_member

  # The staging bucket is created by Cloud Functions on the first deployment, so it cannot
  # be granted on directly; the condition limits the project-level grant to it.
  condition {
    title       = "Cloud Functions staged sources only"
    description = "Read the function sources Cloud Functions stages in ${local.staged_sources_bucket}."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.staged_sources_bucket}\")"
  }
}

# New grants (and new service accounts) take about two minutes to be honoured, sometimes
# more. The functions are deployed only after this wait: a deployment checks that the API
# account can read the secret it mounts, and the build runs as the build account.
resource "time_sleep" "iam" {
  create_duration = var.iam_propagation_wait

  triggers = {
    grants = sha1(join(",", concat(
      [for grant in google_project_iam_member.function_datastore_user : grant.id],
      [for grant in google_project_iam_member.function_log_writer : grant.id],
      [for grant in google_cloud_tasks_queue_iam_member.function_enqueuer : grant.id],
      [for grant in google_cloud_tasks_queue_iam_member.function_task_viewer : grant.id],
      [for grant in google_service_account_iam_member.function_act_as_tasks_invoker : grant.id],
      [
        google_secret_manager_secret_iam_member.api_key_accessor.id,
        google_project_iam_member.build_log_writer.id,
        google_project_iam_member.build_artifact_writer.id,
        google_storage_bucket_iam_member.build_source_reader.id,
        google_project_iam_member.build_staged_source_reader.id,
      ],
    )))
  }

  depends_on = [
    google_project_iam_member.function_datastore_user,
    google_project_iam_member.function_log_writer,
    google_cloud_tasks_queue_iam_member.function_enqueuer,
    google_cloud_tasks_queue_iam_member.function_task_viewer,
    google_service_account_iam_member.function_act_as_tasks_invoker,
    google_secret_manager_secret_iam_member.api_key_accessor,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_artifact_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_project_iam_member.build_staged_source_reader,
  ]
}

# --- who may invoke which function -----------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "api_invoker" {
  for_each = toset(var.api_invoker_members)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.api.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_v2_service_iam_member" "dispatcher_tasks_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.dispatcher.service_config[0].service
  role     = "roles/run.invoker"
  member   = local.invoker_member
}

resource "google_cloud_run_v2_service_iam_member" "events_trigger_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.events.service_config[0].service
  role     = "roles/run.invoker"
  member   = local.trigger_member
}

# --- Pub/Sub service agent: dead-lettering and authenticated push ------------------------

resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.runs_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_events_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.events_trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
