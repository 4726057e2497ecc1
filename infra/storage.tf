# Results: private, uniform access, public access prevention enforced, objects deleted after
# results_retention_days. No versioning: a user's erasure must really remove their images.
resource "google_storage_bucket" "results" {
  #checkov:skip=CKV_GCP_78:No versioning on purpose: erased selfies and avatars must not live on as noncurrent versions.
  #checkov:skip=CKV_GCP_62:Access to objects is audited by Cloud Audit Logs (Data Access logs of storage.googleapis.com), not by legacy usage logs in another bucket.
  name     = local.results_bucket_name
  location = var.region
  project  = var.project_id

  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  lifecycle_rule {
    condition {
      age = var.results_retention_days
    }
    action {
      type = "Delete"
    }
  }

  # Half-finished uploads hold bytes too.
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.required]
}

# The function's source archive, read by Cloud Build at deploy time.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only deployment archives written by Terraform; Cloud Audit Logs record access.
  name     = local.source_bucket_name
  location = var.region
  project  = var.project_id

  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  # Old archives are only needed to roll back a few deployments.
  lifecycle_rule {
    condition {
      num_newer_versions = 5
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}

# cloud_functions/ as deployed by `gcloud functions deploy --source cloud_functions`.
data "archive_file" "function_source" {
  type        = "zip"
  source_dir  = "${path.module}/../cloud_functions"
  output_path = "${path.module}/function-source.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc", "**/.pytest_cache/**", "**/.mypy_cache/**"]
}

# Named by content, so a code change makes a new object and a new function revision.
resource "google_storage_bucket_object" "function_source" {
  name   = "function-source-${data.archive_file.function_source.output_sha256}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.function_source.output_path
}
