# The function runs as its own service account with only what it uses: Vertex AI (the image
# model), object admin on the results bucket, and token creator on itself to sign URLs
# (IAM signBlob: there is no key file). Cloud Vision needs no role, only its API enabled.
resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-function"
  display_name = "animal-avatar function"
  description  = "Runs ${var.function_name}: Vision, Vertex AI, the results bucket."
}

resource "google_project_iam_member" "function_vertex_ai" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = google_service_account.function.member
}

resource "google_storage_bucket_iam_member" "function_results" {
  bucket = google_storage_bucket.results.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.function.member
}

resource "google_service_account_iam_member" "function_sign_blob" {
  service_account_id = google_service_account.function.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.function.member
}

# Cloud Build builds the function as this account, not the default compute one (which often
# holds Editor).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-function-build"
  display_name = "animal-avatar function build"
  description  = "Cloud Build identity that builds ${var.function_name}."
}

# What a function build needs (Cloud Build's custom build account guide): write logs, push the
# image to Artifact Registry, read the source archive (from the source bucket only).
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

locals {
  # Internal ingress needs the caller inside the project's VPC: true of the API on Cloud Run
  # (deploy_api), whose egress then goes through the VPC (api_cloud_run.tf). An API elsewhere
  # (a VM outside Google Cloud, another project) must reach the URL: ALLOW_ALL, IAM still guards.
  function_ingress = coalesce(var.function_ingress, var.deploy_api ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_ALL")
}

resource "google_cloudfunctions2_function" "main" {
  name        = var.function_name
  location    = var.region
  project     = var.project_id
  description = "Selfie to animal avatar (Cloud Vision, Vertex AI, Cloud Storage)."

  build_config {
    runtime         = var.function_runtime
    entry_point     = "generate_animal_avatar"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    #checkov:skip=CKV_GCP_124:Ingress is internal when the API runs on Cloud Run here (deploy_api); an API outside Google Cloud needs ALLOW_ALL, and only the API's identity holds run.invoker (iam.tf).
    available_memory                 = "${var.function_memory_mb}Mi"
    available_cpu                    = var.function_cpu
    timeout_seconds                  = var.function_timeout_s
    min_instance_count               = var.function_min_instances
    max_instance_count               = var.function_max_instances
    max_instance_request_concurrency = var.function_concurrency
    ingress_settings                 = local.function_ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function.email

    environment_variables = {
      ENVIRONMENT      = "production" # placeholder secrets are refused
      AVATAR_BACKEND   = "gcp"
      GCP_PROJECT      = var.project_id # Vertex AI's, and the log's trace names' (projects/P/traces/ID)
      GCP_LOCATION     = var.vertex_location
      GCS_BUCKET       = google_storage_bucket.results.name
      VERTEX_MODEL     = var.vertex_model
      COMPOSE_FALLBACK = var.compose_fallback
      SIGNED_URL_TTL_S = tostring(var.signed_url_ttl_s)
      # Google calls must give up before the platform kills the request.
      GCP_DEADLINE_S = tostring(var.function_timeout_s - 5)
    }
  }

  depends_on = [
    google_project_service.required,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_source,
  ]
}
