# The cloud side of animal-avatar: the function (Vision + Vertex AI + Cloud Storage) and,
# with deploy_api, the API on Cloud Run with Cloud SQL. Files by concern:
#   storage.tf  results and source buckets     function.tf     the function and its identity
#   iam.tf      the API's identity and grants   api_cloud_run.tf  the optional Cloud Run + Cloud SQL part
#   work_queue.tf  with deploy_api: the Cloud Tasks queue of the API's async work, its identity
#   batch.tf    with deploy_batch: the batch job on Cloud Run jobs, its identity, its schedule

locals {
  function_apis = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com", # signBlob, for V4 signed URLs
    "run.googleapis.com",
    "storage.googleapis.com",
    "vision.googleapis.com",
  ]
  api_apis = [
    "cloudtasks.googleapis.com",
    "compute.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
  ]
  # The batch job needs only run.googleapis.com (above); its schedule, Cloud Scheduler.
  batch_apis    = var.deploy_batch && var.batch_schedule != null ? ["cloudscheduler.googleapis.com"] : []
  required_apis = toset(concat(local.function_apis, var.deploy_api ? local.api_apis : [], local.batch_apis))

  results_bucket_name = "${var.project_id}-${var.name_prefix}-results"
  source_bucket_name  = "${var.project_id}-${var.name_prefix}-function-source"
}

resource "google_project_service" "required" {
  for_each = local.required_apis

  project = var.project_id
  service = each.value

  # Other workloads of the project may rely on these APIs: destroying this stack leaves them on.
  disable_on_destroy = false
}
