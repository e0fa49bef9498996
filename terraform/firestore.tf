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

  depends_on = [time_sleep.apis]
}

locals {
  runs_collection        = "${var.name}_runs"
  definitions_collection = "${var.name}_definitions"
  # Each run's results are a subcollection named "results": one collection group.
  results_collection = "results"

  # Fields no query reads (refluxo/backends/gcp/firestore/layout.py): exempt from
  # single-field indexing, so a commit writes no index entries for them. updatedAt is
  # written by every commit of every run with an ever-increasing value: indexed, it would
  # be a write hotspot.
  unindexed_fields = {
    runs_head           = { collection = local.runs_collection, field = "head" }
    runs_input          = { collection = local.runs_collection, field = "input" }
    runs_pending        = { collection = local.runs_collection, field = "pending" }
    runs_node_counts    = { collection = local.runs_collection, field = "nodeCounts" }
    runs_recent_commits = { collection = local.runs_collection, field = "recentCommits" }
    runs_updated_at     = { collection = local.runs_collection, field = "updatedAt" }
    results_result      = { collection = local.results_collection, field = "result" }
    definitions_body    = { collection = local.definitions_collection, field = "body" }
  }

  # TTL: finished runs and their results carry expireAt (finish time + run_retention_days,
  # written by the runtime); Firestore deletes them some time after it passes. A TTL
  # deletes single documents, not subcollections, so the results carry their own expireAt.
  ttl_collections = {
    runs    = local.runs_collection
    results = local.results_collection
  }
}

# Listing runs: the store queries `where status == X order by createdAt desc`.
resource "google_firestore_index" "runs_by_status" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = local.runs_collection
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

# The reconciler: `where status in [...] and dueAt <= now order by dueAt`, the runs whose
# next step is overdue.
resource "google_firestore_index" "runs_by_status_due" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = local.runs_collection
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "dueAt"
    order      = "ASCENDING"
  }
}

resource "google_firestore_field" "unindexed" {
  for_each = local.unindexed_fields

  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = each.value.collection
  field      = each.value.field

  # An empty index_config removes every single-field index of the field.
  index_config {}
}

# dueAt is queried in ascending order only (through the composite index above and on its
# own): keep that index, drop the descending and array ones.
resource "google_firestore_field" "runs_due_at" {
  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = local.runs_collection
  field      = "dueAt"

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
  }
}

# expireAt: the TTL field of runs and results, and never queried (an ever-increasing
# timestamp: not indexed either).
resource "google_firestore_field" "expire_at" {
  for_each = local.ttl_collections

  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = each.value
  field      = "expireAt"

  index_config {}
  ttl_config {}
}
