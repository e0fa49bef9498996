# Shared values, the project's APIs and the service accounts.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
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
  reconcile_url  = "${local.dispatcher_url}/tasks/reconcile"

  # Google-managed identity that pushes messages and forwards dead letters; created
  # explicitly (pubsub.tf) so that granting it roles never races its provisioning.
  pubsub_service_agent = google_project_service_identity.pubsub.member

  api_member        = "serviceAccount:${google_service_account.api.email}"
  dispatcher_member = "serviceAccount:${google_service_account.dispatcher.email}"
  events_member     = "serviceAccount:${google_service_account.events.email}"
  invoker_member    = "serviceAccount:${google_service_account.tasks_invoker.email}"
  trigger_member    = "serviceAccount:${google_service_account.events_trigger.email}"
  build_member      = "serviceAccount:${google_service_account.build.email}"

  # The identities the three functions run as, each holding only what its routes need.
  function_members = {
    api        = local.api_member
    dispatcher = local.dispatcher_member
    events     = local.events_member
  }

  labels = merge(var.labels, {
    app        = "refluxo"
    deployment = var.name
  })

  services = toset([
    "artifactregistry",
    "cloudbuild",
    "cloudfunctions",
    "cloudresourcemanager", # data.google_project reads the project number through it
    "cloudscheduler",
    "cloudtasks",
    "eventarc",
    "firestore",
    "iam",
    "logging",
    "monitoring",
    "pubsub",
    "run",
    "secretmanager",
    "storage",
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  project                    = var.project_id
  service                    = "${each.key}.googleapis.com"
  disable_on_destroy         = false
  disable_dependent_services = false
}

# A newly enabled API can refuse calls for a few minutes. Everything that calls one of the
# APIs above depends on this wait instead of on the enablement itself.
resource "time_sleep" "apis" {
  create_duration = var.api_propagation_wait

  triggers = {
    services = join(",", sort([for service in google_project_service.enabled : service.service]))
  }

  depends_on = [google_project_service.enabled]
}

# --- service accounts --------------------------------------------------------------------

# The API function: the callers' routes. The only account that can read the API key.
resource "google_service_account" "api" {
  project      = var.project_id
  account_id   = "${var.name}-api"
  display_name = "refluxo API function"
  description  = "Runs ${local.api_name}: start, list, get, resume and cancel runs."

  depends_on = [time_sleep.apis]
}

# The dispatcher: runs workflow steps (the user's node code) for Cloud Tasks and the
# reconciler for Cloud Scheduler. Cannot read the API key.
resource "google_service_account" "dispatcher" {
  project      = var.project_id
  account_id   = "${var.name}-dispatcher"
  display_name = "refluxo step dispatcher"
  description  = "Runs ${local.dispatcher_name}: workflow steps and the reconciler."

  depends_on = [time_sleep.apis]
}

# The events function: start / resume / cancel messages from Pub/Sub. Cannot read the key.
resource "google_service_account" "events" {
  project      = var.project_id
  account_id   = "${var.name}-events"
  display_name = "refluxo events function"
  description  = "Runs ${local.events_name}: start, resume and cancel messages from Pub/Sub."

  depends_on = [time_sleep.apis]
}

# The identity in the OIDC token of every Cloud Tasks step request and of the reconciler's
# Cloud Scheduler request; may only invoke the dispatcher.
resource "google_service_account" "tasks_invoker" {
  project      = var.project_id
  account_id   = "${var.name}-tasks-invoker"
  display_name = "refluxo Cloud Tasks invoker"
  description  = "OIDC identity of the ${var.name}-steps tasks and the ${var.name}-reconcile job calling the dispatcher."

  depends_on = [time_sleep.apis]
}

# The identity in the OIDC token of every Pub/Sub push to the events function; may only
# invoke the events function.
resource "google_service_account" "events_trigger" {
  project      = var.project_id
  account_id   = "${var.name}-events-trigger"
  display_name = "refluxo events push identity"
  description  = "OIDC identity of the ${var.name}-runs push subscription to the events function."

  depends_on = [time_sleep.apis]
}

# Cloud Build runs the functions' builds as this account: projects created since mid-2024
# no longer give the default build account the rights a function build needs.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name}-build"
  display_name = "refluxo functions build"
  description  = "Cloud Build identity of the ${var.name} functions' builds."

  depends_on = [time_sleep.apis]
}
