# The API's identity: the only principal that may invoke the function. It also signs result
# URLs (token creator on itself) and deletes a user's images (object admin on the results bucket).
resource "google_service_account" "api" {
  count = var.api_service_account_email == null ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-api"
  display_name = "animal-avatar API"
  description  = "Identity of the animal-avatar API: invokes the function, signs and deletes results."
}

locals {
  api_service_account_email = coalesce(var.api_service_account_email, one(google_service_account.api[*].email))
  api_member                = "serviceAccount:${local.api_service_account_email}"
}

# Invoking a 2nd-gen function is invoking its Cloud Run service: run.invoker on that service only.
resource "google_cloud_run_v2_service_iam_member" "function_invoker" {
  project  = var.project_id
  location = google_cloudfunctions2_function.main.location
  name     = google_cloudfunctions2_function.main.service_config[0].service
  role     = "roles/run.invoker"
  member   = local.api_member
}

resource "google_storage_bucket_iam_member" "api_results" {
  bucket = google_storage_bucket.results.name
  role   = "roles/storage.objectAdmin"
  member = local.api_member
}

resource "google_service_account_iam_member" "api_sign_blob" {
  service_account_id = "projects/${var.project_id}/serviceAccounts/${local.api_service_account_email}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.api_member
}
