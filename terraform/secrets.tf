# The API key: generated here so `terraform apply` needs no manual step, stored in Secret
# Manager and mounted into the API function as REFLUXO_API_KEY. The value is in the
# Terraform state (keep the state private); rotate with
# `terraform apply -replace=random_password.api_key`.
resource "random_password" "api_key" {
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

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "api_key" {
  secret      = google_secret_manager_secret.api_key.id
  secret_data = random_password.api_key.result
}
