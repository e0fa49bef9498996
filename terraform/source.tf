# The functions' source, from an allow-list: main.py, requirements.txt, the refluxo
# package and the App's own files (var.app_source_patterns). Nothing else of the source
# directory (virtual environments, .env files, keys, Terraform state or variables, tests)
# can reach the archive, whatever lies next to the code. The zip is uploaded under its MD5,
# so any change to the code gives a new object name and redeploys the functions.

locals {
  source_dir = coalesce(var.source_dir, "${path.module}/..")

  # fileset() patterns, relative to source_dir, of the files deployed.
  source_patterns = concat(["main.py", "requirements.txt", "refluxo/**"], var.app_source_patterns)

  # Dropped from what the patterns match: hidden files and directories (.env, .git,
  # .venv...), byte-code caches, and anything shaped like a key, Terraform state or
  # Terraform variables.
  source_excluded = "(^|/)(\\.|__pycache__/)|\\.(pyc|pyo|pem|key|p12|pfx|tfstate|tfvars|tfvars\\.json)$|\\.tfstate\\."

  source_files = sort(distinct([
    for candidate in flatten([for pattern in local.source_patterns : tolist(fileset(local.source_dir, pattern))]) :
    candidate if !can(regex(local.source_excluded, candidate))
  ]))
}

# Each allowed file becomes one `source` block: the archive holds exactly these files,
# sorted (the provider writes them in name order with fixed timestamps, so the same files
# give the same bytes and MD5 on every machine). The files are read as UTF-8 text.
data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/.terraform/tmp/${var.name}-source.zip"

  dynamic "source" {
    for_each = local.source_files

    content {
      filename = source.value
      content  = file("${local.source_dir}/${source.value}")
    }
  }
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

  depends_on = [time_sleep.apis]
}

resource "google_storage_bucket_object" "source" {
  bucket       = google_storage_bucket.source.name
  name         = "source/${data.archive_file.source.output_md5}.zip"
  source       = data.archive_file.source.output_path
  content_type = "application/zip"
}
