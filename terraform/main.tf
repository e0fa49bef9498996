# Shared values, the project's APIs and the three service accounts.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  source_dir = coalesce(var.source_dir, "${path.module}/..")

  api_name        = "${var.name}-api"
  dispatcher_name = "${var.name}-dispatcher"
  events_name     = "${var.name}-events"

  # The dispatcher URL, without a dependency cycle. Every function (the dispatcher too: it
  # enqueues the next step) needs the URL Cloud Tasks calls and the OIDC audience the tokens
  # carry, but the dispatcher's own `service_config[0].uri` is only known after it exists, so
  # reading it from its own environment would be a cycle. A Cloud Functions (2nd gen)
  # function is served by a Cloud Run service of the same name, and Cloud Run gives every
  # service a deterministic URL, https://SERVICE-PROJECT_NUMBER.REGION.run.app, accepted as
  # an ID-token audience like the hashed one. Computing it here gives all three functions
  # the same value before anything is created.
  dispatcher_url = "https://${local.dispatcher_name}-${data.google_project.this.number}.${var.region}.run.app"
  step_url       = "${local.dispatcher_url}/tasks/step"

  # Google-managed identity that pushes messages and forwards dead letters.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  runtime_member = "serviceAccount:${google_service_account.runtime.email}"
  invoker_member = "serviceAccount:${google_service_account.tasks_invoker.email}"
  trigger_member = "serviceAccount:${google_service_account.events_trigger.email}"

  labels = merge(var.labels, {
    app        = "refluxo"
    deployment = var.name
  })

  services = toset([
    "artifactregistry",
    "cloudbuild",
    "cloudfunctions",
    "cloudresourcemanager", # data.google_project reads the project number through it
    "cloudtasks",
    "eventarc",
    "firestore",
    "iam",
    "logging",
    "pubsub",
    "run",
    "secretmanager",
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  project                    = var.project_id
  service                    = "${each.key}.googleapis.com"
  disable_on_destroy         = false
  disable_dependent_services = false
}

# Runs the three functions: reads and writes Firestore, enqueues step tasks (acting as the
# invoker account so the tasks carry its OIDC token) and reads the API key.
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name}-runtime"
  display_name = "refluxo functions runtime"
  description  = "Identity of the ${var.name} api, dispatcher and events functions."

  depends_on = [google_project_service.enabled]
}

# The identity in the OIDC token of every Cloud Tasks step request; may only invoke the
# dispatcher.
resource "google_service_account" "tasks_invoker" {
  project      = var.project_id
  account_id   = "${var.name}-tasks-invoker"
  display_name = "refluxo Cloud Tasks invoker"
  description  = "OIDC identity of the ${var.name}-steps Cloud Tasks requests to the dispatcher."

  depends_on = [google_project_service.enabled]
}

# The identity in the OIDC token of every Pub/Sub push to the events function; may only
# invoke the events function.
resource "google_service_account" "events_trigger" {
  project      = var.project_id
  account_id   = "${var.name}-events-trigger"
  display_name = "refluxo events push identity"
  description  = "OIDC identity of the ${var.name}-runs push subscription to the events function."

  depends_on = [google_project_service.enabled]
}
