# The API key: generated at apply time, stored in Secret Manager and mounted into the API
# function as REFLUXO_API_KEY. It never reaches the Terraform state or a plan: the value is
# ephemeral (opened during the run, never persisted) and written through the version's
# write-only argument. Terraform sends it only when secret_data_wo_version changes, so
# rotating the key is `terraform apply -var api_key_version=N+1`: a new version is
# created, the API function redeployed with it, then the old version deleted.
ephemeral "random_password" "api_key" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "api_key" {
  project             = var.project_id
  secret_id           = "${var.name}-api-key"
  labels              = local.labels
  deletion_protection = var.deletion_protection

  replication {
    auto {}
  }

  depends_on = [time_sleep.apis]
}

resource "google_secret_manager_secret_version" "api_key" {
  secret                 = google_secret_manager_secret.api_key.id
  secret_data_wo         = ephemeral.random_password.api_key.result
  secret_data_wo_version = var.api_key_version

  # On rotation the new version exists, and the API function uses it, before the old one
  # is deleted: an instance starting meanwhile always finds a version to mount.
  lifecycle {
    create_before_destroy = true
  }
}
