# With deploy_api: the API's async work (generations, webhook deliveries) goes through a Cloud
# Tasks queue. The API enqueues one HTTP task per job, POST {WORK_URL}/internal/work/{kind}/{id}
# on itself with an OIDC token of the tasks account; the queue holds the task durably, throttles
# the dispatches (which protects the Vertex AI quota behind the function) and retries failures
# with backoff. So no API instance has to stay up to finish work after its answer.

resource "google_cloud_tasks_queue" "work" {
  count = local.api_count

  project  = var.project_id
  name     = "${var.name_prefix}-work"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.work_queue_max_dispatches_per_second
    max_concurrent_dispatches = var.work_queue_max_concurrent_dispatches
  }

  # No max_retry_duration: max_attempts alone ends a task, and the API (told WORK_MAX_ATTEMPTS)
  # records the failure on that last attempt.
  retry_config {
    max_attempts  = var.work_queue_max_attempts
    min_backoff   = "${var.work_queue_min_backoff_s}s"
    max_backoff   = "${var.work_queue_max_backoff_s}s"
    max_doublings = var.work_queue_max_doublings
  }

  # One log entry per dispatch attempt (task name, URL, status; never the body or the token).
  stackdriver_logging_config {
    sampling_ratio = var.work_queue_log_sampling_ratio
  }

  depends_on = [google_project_service.required]
}

# The identity of the queue's OIDC tokens, and the only one /internal/work accepts
# (WORK_SERVICE_ACCOUNT). It holds no role on the project: at most run.invoker on the API.
resource "google_service_account" "tasks" {
  count = local.api_count

  project      = var.project_id
  account_id   = "${var.name_prefix}-tasks"
  display_name = "animal-avatar work queue"
  description  = "Identity Cloud Tasks uses to call the API's /internal/work endpoint (OIDC token)."
}

# The API creates the tasks: enqueuer on this queue only, not on the project.
resource "google_cloud_tasks_queue_iam_member" "api_enqueuer" {
  count = local.api_count

  project  = var.project_id
  location = google_cloud_tasks_queue.work[0].location
  name     = google_cloud_tasks_queue.work[0].name
  role     = "roles/cloudtasks.enqueuer"
  member   = local.api_member
}

# A task that carries an OIDC token of an account may only be created by a caller that can act
# as that account (iam.serviceAccounts.actAs): service account user on the tasks account only.
resource "google_service_account_iam_member" "api_acts_as_tasks" {
  count = local.api_count

  service_account_id = google_service_account.tasks[0].name
  role               = "roles/iam.serviceAccountUser"
  member             = local.api_member
}

# A public API (api_public) has Cloud Run's invoker check switched off and checks the token
# itself; a private one admits the tasks account through IAM, on this service only.
resource "google_cloud_run_v2_service_iam_member" "tasks_invoker" {
  count = var.deploy_api && !var.api_public ? 1 : 0

  project  = var.project_id
  location = google_cloud_run_v2_service.api[0].location
  name     = google_cloud_run_v2_service.api[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.tasks[0].member
}

# The URL Cloud Tasks calls the API at. It cannot come from the service itself (its environment
# would depend on it): a custom domain (api_url), else Cloud Run's deterministic URL
# https://SERVICE-PROJECT_NUMBER.REGION.run.app.
data "google_project" "main" {
  count = var.deploy_api && var.api_url == null ? 1 : 0

  project_id = var.project_id
}

locals {
  api_run_app_urls = [
    for project in data.google_project.main : "https://${local.api_service_name}-${project.number}.${var.region}.run.app"
  ]
  api_url = var.api_url != null ? var.api_url : one(local.api_run_app_urls)
}
