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
  # The join ledger of a run that waits for child runs: under runs/{id}/joins/{version}
  # (a document never written), "ends" (one document per child end), "counts" (16 counter
  # shards) and "inputs" (the children's inputs), each one collection group.
  ends_collection   = "ends"
  counts_collection = "counts"
  inputs_collection = "inputs"

  # Fields no query reads on their own (refluxo/backends/gcp/firestore/layout.py): exempt
  # from single-field indexing, so a commit writes no index entries for them. updatedAt is
  # written by every commit of every run with an ever-increasing value: indexed, it would
  # be a write hotspot. createdAt, runId and dueAt are only read through the composite
  # indexes below, which do not need single-field indexes. Results are read by document
  # name (a hash of nodeId and nodeIndex), never queried by those fields. version and
  # resultCount change on every commit and, like definitionVersion, are read from the
  # document, never queried (workflow keeps its index: operators filter runs by it).
  # hasJoins (set once a run has waited for child runs) is read from the document. The
  # ledger's documents are read by name (ends in name order, which is index order),
  # never queried by a field: none of their fields is indexed.
  unindexed_fields = {
    runs_head           = { collection = local.runs_collection, field = "head" }
    runs_input          = { collection = local.runs_collection, field = "input" }
    runs_pending        = { collection = local.runs_collection, field = "pending" }
    runs_node_counts    = { collection = local.runs_collection, field = "nodeCounts" }
    runs_recent_commits = { collection = local.runs_collection, field = "recentCommits" }
    runs_updated_at     = { collection = local.runs_collection, field = "updatedAt" }
    runs_created_at     = { collection = local.runs_collection, field = "createdAt" }
    runs_run_id         = { collection = local.runs_collection, field = "runId" }
    runs_due_at         = { collection = local.runs_collection, field = "dueAt" }
    runs_version        = { collection = local.runs_collection, field = "version" }
    runs_result_count   = { collection = local.runs_collection, field = "resultCount" }
    runs_definition     = { collection = local.runs_collection, field = "definitionVersion" }
    runs_has_joins      = { collection = local.runs_collection, field = "hasJoins" }
    results_result      = { collection = local.results_collection, field = "result" }
    results_node_id     = { collection = local.results_collection, field = "nodeId" }
    results_node_index  = { collection = local.results_collection, field = "nodeIndex" }
    ends_index          = { collection = local.ends_collection, field = "index" }
    ends_run_id         = { collection = local.ends_collection, field = "runId" }
    ends_status         = { collection = local.ends_collection, field = "status" }
    ends_output         = { collection = local.ends_collection, field = "output" }
    ends_error          = { collection = local.ends_collection, field = "error" }
    counts_shard        = { collection = local.counts_collection, field = "shard" }
    counts_ended        = { collection = local.counts_collection, field = "ended" }
    counts_failed       = { collection = local.counts_collection, field = "failed" }
    inputs_items        = { collection = local.inputs_collection, field = "items" }
    definitions_body    = { collection = local.definitions_collection, field = "body" }
  }

  # TTL: finished runs, their results and their join ledgers carry expireAt (finish time
  # + run_retention_days, written by the runtime); Firestore deletes them some time after
  # it passes. A TTL deletes single documents, not subcollections, so the results and the
  # ledger's ends, counts and inputs carry their own expireAt.
  ttl_collections = {
    runs    = local.runs_collection
    results = local.results_collection
    ends    = local.ends_collection
    counts  = local.counts_collection
    inputs  = local.inputs_collection
  }
}

# Listing runs, newest first, ties by run id (documents are named by a hash of it):
# `order by createdAt desc, runId desc`, and the same `where status == X`.
resource "google_firestore_index" "runs_by_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = local.runs_collection
  query_scope = "COLLECTION"

  fields {
    field_path = "createdAt"
    order      = "DESCENDING"
  }

  fields {
    field_path = "runId"
    order      = "DESCENDING"
  }
}

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

  fields {
    field_path = "runId"
    order      = "DESCENDING"
  }
}

# The reconciler's overdue runs: `where dueAt <= t order by dueAt, runId`. dueAt is absent
# from finished runs and runs waiting for a caller, so the query needs no status filter.
resource "google_firestore_index" "runs_by_due" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = local.runs_collection
  query_scope = "COLLECTION"

  fields {
    field_path = "dueAt"
    order      = "ASCENDING"
  }

  fields {
    field_path = "runId"
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

# expireAt: the TTL field of runs, results and the join ledger, and never queried (an
# ever-increasing timestamp: not indexed either). retentionPending, which marks a finished
# run whose results or ledger are not all stamped yet, is queried by equality: it keeps
# its automatic index.
resource "google_firestore_field" "expire_at" {
  for_each = local.ttl_collections

  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = each.value
  field      = "expireAt"

  index_config {}
  ttl_config {}
}
