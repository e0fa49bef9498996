# The functions' source: the repository root zipped, uploaded under its MD5 so that any
# change to the code gives a new object name and redeploys the functions.
data "archive_file" "source" {
  type             = "zip"
  source_dir       = local.source_dir
  output_path      = "${path.module}/.terraform/tmp/${var.name}-source.zip"
  output_file_mode = "0644" # the same bytes (and MD5) on every machine

  excludes = [
    ".venv*",
    ".git",
    ".github",
    ".ci",
    ".terraform",
    ".hypothesis",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".refluxo",
    "**/__pycache__",
    "**/*.pyc",
    "**/*.db",
    "**/*.db-wal",
    "**/*.db-shm",
    "*.egg-info",
    "pyproject.toml", # requirements.txt is the functions' dependency list
    "build",
    "dist",
    "bench",
    "scripts",
    "terraform",
    "tests",
  ]
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs (the source zips, no user data); usage logs would need a second bucket that this check flags in turn, and Data Access audit logs cover reads where required.
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_source_bucket
  labels                      = local.labels

  versioning {
    enabled = true
  }

  # Overwritten or deleted archives are kept 30 days, then removed.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  bucket       = google_storage_bucket.source.name
  name         = "source/${data.archive_file.source.output_md5}.zip"
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}
