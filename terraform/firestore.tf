# The run store. Native mode, in the functions' region. Terraform never deletes it:
# deletion_policy ABANDON leaves the data in place on destroy, and delete protection stops
# accidental deletion from elsewhere. Point-in-time recovery keeps 7 days of versions.
resource "google_firestore_database" "default" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.region
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.enabled]
}

# Listing runs: the store queries `where status == X order by createdAt desc`.
resource "google_firestore_index" "runs_by_status" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "${var.name}_runs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "createdAt"
    order      = "DESCENDING"
  }
}
