# Every IAM grant of the deployment, each on the narrowest resource that works. No
# primitive roles, nothing for allUsers / allAuthenticatedUsers.
#
#   runtime SA        roles/datastore.user                 project (Firestore has no
#                                                          finer grant for documents)
#                     roles/logging.logWriter              project
#                     roles/cloudtasks.enqueuer            the steps queue
#                     roles/iam.serviceAccountUser         the tasks invoker SA (act-as, so
#                                                          tasks carry the invoker's token)
#                     roles/secretmanager.secretAccessor   the API key secret
#   tasks invoker SA  roles/run.invoker                    the dispatcher service
#   events trigger SA roles/run.invoker                    the events service
#   api members       roles/run.invoker                    the api service
#   Pub/Sub agent     roles/pubsub.publisher               the dead-letter topic
#                     roles/pubsub.subscriber              the events push subscription
#                     roles/iam.serviceAccountTokenCreator the events trigger SA (push OIDC)

# --- runtime service account ----------------------------------------------------------

resource "google_project_iam_member" "runtime_datastore_user" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.runtime_member
}

resource "google_project_iam_member" "runtime_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.runtime_member
}

resource "google_cloud_tasks_queue_iam_member" "runtime_enqueuer" {
  project  = var.project_id
  location = google_cloud_tasks_queue.steps.location
  name     = google_cloud_tasks_queue.steps.name
  role     = "roles/cloudtasks.enqueuer"
  member   = local.runtime_member
}

resource "google_service_account_iam_member" "runtime_act_as_tasks_invoker" {
  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.runtime_member
}

resource "google_secret_manager_secret_iam_member" "runtime_api_key_accessor" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.api_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.runtime_member
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

  # The service agent is provisioned with the Pub/Sub API; by the time a topic exists, so
  # does the agent.
  depends_on = [google_pubsub_topic.runs]
}
