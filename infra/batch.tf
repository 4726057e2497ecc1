# Optional (deploy_batch = true): the batch job (`python -m batch`, the Dockerfile's batch
# target) as a Cloud Run job. One execution runs batch_task_count tasks, batch_parallelism at a
# time; Cloud Run gives each its CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT, by which it takes
# its own share of the inputs and writes its own manifest part. The job runs the function's
# pipeline in-process with the local face models (no Vision, no Vertex AI): its identity may only
# read the input prefix and write the output prefix. With batch_schedule, Cloud Scheduler starts
# it through the Cloud Run Admin API as an identity that may run this job and nothing else.

# The job's paths and IAM conditions. Pure functions of the variables (and the results bucket's
# name): tests/infra evaluates this block offline, so keep it first and free of resources.
locals {
  batch_count          = var.deploy_batch ? 1 : 0
  batch_schedule_count = var.deploy_batch && var.batch_schedule != null ? 1 : 0
  batch_job_name       = "${var.name_prefix}-batch"

  # gs://BUCKET/PREFIX split in two. A prefix is empty (the whole bucket) or ends in "/", so read
  # access to "in/" is not also access to "in-old/". The variables' validations vouch for the form.
  batch_input_parts   = regex("^gs://([^/]+)/?(.*)$", coalesce(var.batch_input, "gs://unset"))
  batch_input_bucket  = local.batch_input_parts[0]
  batch_input_path    = trimsuffix(local.batch_input_parts[1], "/")
  batch_input_prefix  = local.batch_input_path == "" ? "" : "${local.batch_input_path}/"
  batch_output_path   = var.batch_output == null ? "batch" : trimsuffix(regex("^gs://[^/]+/(.*)$", var.batch_output)[0], "/")
  batch_output_prefix = "${local.batch_output_path}/"
  batch_input_url     = "gs://${local.batch_input_bucket}/${local.batch_input_prefix}"
  batch_output_url    = "gs://${local.results_bucket_name}/${local.batch_output_prefix}"

  # IAM conditions on a bucket's objects: a read or write names the object (resource.name); a
  # listing names only the bucket, so it is allowed by the prefix it asks for.
  batch_input_condition = join(" || ", [
    "resource.name.startsWith(\"projects/_/buckets/${local.batch_input_bucket}/objects/${local.batch_input_prefix}\")",
    "api.getAttribute(\"storage.googleapis.com/objectListPrefix\", \"\").startsWith(\"${local.batch_input_prefix}\")",
  ])
  batch_output_condition = join(" || ", [
    "resource.name.startsWith(\"projects/_/buckets/${local.results_bucket_name}/objects/${local.batch_output_prefix}\")",
    "api.getAttribute(\"storage.googleapis.com/objectListPrefix\", \"\").startsWith(\"${local.batch_output_prefix}\")",
  ])
}

# --- the job's identity: read the input prefix, write the output prefix, nothing else -----------

resource "google_service_account" "batch" {
  count = local.batch_count

  project      = var.project_id
  account_id   = "${var.name_prefix}-batch"
  display_name = "animal-avatar batch job"
  description  = "Runs the batch job: reads its input prefix, writes its output prefix of the results bucket."
}

# Object Viewer (get and list) on the input bucket, narrowed by the condition to the input prefix.
# IAM conditions need uniform bucket-level access on that bucket (the results bucket has it).
resource "google_storage_bucket_iam_member" "batch_input" {
  count = local.batch_count

  bucket = local.batch_input_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.batch[0].member

  condition {
    title       = "batch-input-prefix"
    description = "Only objects under the batch job's input prefix, and listings of it."
    expression  = local.batch_input_condition
  }
}

# Object User (get, list, create, overwrite, compose, delete; no IAM) on the results bucket,
# narrowed to the output prefix: the users' avatars/ and uploads/ stay out of reach.
resource "google_storage_bucket_iam_member" "batch_output" {
  count = local.batch_count

  bucket = google_storage_bucket.results.name
  role   = "roles/storage.objectUser"
  member = google_service_account.batch[0].member

  condition {
    title       = "batch-output-prefix"
    description = "Only objects under the batch job's output prefix, and listings of it."
    expression  = local.batch_output_condition
  }
}

# --- the job ------------------------------------------------------------------------------------

locals {
  # The function's settings (cloud_functions/avatar/config.py): the local backends, i.e. the face
  # models in the image (MODEL_DIR) and the procedural compositor. No secret: the job writes its
  # results to the output prefix itself and signs no link; its pipeline's store gets a throwaway
  # key (batch/inprocess.py), which production's refusal of the placeholder key accepts.
  batch_env = {
    ENVIRONMENT    = "production"
    AVATAR_BACKEND = "local"
  }
}

# Run it once: gcloud run jobs execute <name> --region <region> --wait (README: the batch job).
resource "google_cloud_run_v2_job" "batch" {
  count = local.batch_count

  project             = var.project_id
  name                = local.batch_job_name
  location            = var.region
  deletion_protection = false

  template {
    task_count  = var.batch_task_count
    parallelism = var.batch_parallelism

    template {
      service_account = google_service_account.batch[0].email
      timeout         = "${var.batch_task_timeout_s}s"
      max_retries     = var.batch_max_retries

      containers {
        image = var.batch_image
        # The image's entrypoint, spelled out; `gcloud run jobs execute --args` replaces the args.
        command = ["python", "-m", "batch"]
        # One worker process per vCPU of the task, said outright rather than read from the
        # sandbox's CPU affinity.
        args = [
          "--input", local.batch_input_url,
          "--output", local.batch_output_url,
          "--animal", var.batch_animals,
          "--workers", var.batch_cpu,
        ]

        resources {
          limits = {
            cpu    = var.batch_cpu
            memory = "${var.batch_memory_mb}Mi"
          }
        }

        dynamic "env" {
          for_each = local.batch_env
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  # The first execution must find its grants in place.
  depends_on = [
    google_project_service.required,
    google_storage_bucket_iam_member.batch_input,
    google_storage_bucket_iam_member.batch_output,
  ]
}

# --- with batch_schedule: Cloud Scheduler runs the job ------------------------------------------

# The identity of the scheduler's OAuth token: it may run this one job and nothing else.
resource "google_service_account" "batch_scheduler" {
  count = local.batch_schedule_count

  project      = var.project_id
  account_id   = "${var.name_prefix}-batch-sched"
  display_name = "animal-avatar batch scheduler"
  description  = "Identity Cloud Scheduler uses to start the batch job (jobs.run on that job only)."
}

# Cloud Run Invoker holds run.jobs.run; granted on the job, it may run that job only. It is the
# role the Cloud Run docs name for executing a job and list as grantable on one job (the Jobs
# Executor roles are not). It cannot override the job's args: that takes Cloud Run Developer.
resource "google_cloud_run_v2_job_iam_member" "batch_scheduler_runs_job" {
  count = local.batch_schedule_count

  project  = var.project_id
  location = google_cloud_run_v2_job.batch[0].location
  name     = google_cloud_run_v2_job.batch[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.batch_scheduler[0].member
}

resource "google_cloud_scheduler_job" "batch" {
  count = local.batch_schedule_count

  project     = var.project_id
  name        = local.batch_job_name
  region      = var.region
  description = "Starts the Cloud Run job ${local.batch_job_name} (python -m batch)."
  schedule    = var.batch_schedule
  time_zone   = var.batch_time_zone

  # The :run call only starts an execution and answers at once: a retry follows a failed start.
  retry_config {
    retry_count = 3
  }

  # The Cloud Run Admin API v2: jobs.run, with an OAuth access token of the scheduler's account.
  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.batch[0].name}:run"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oauth_token {
      service_account_email = google_service_account.batch_scheduler[0].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [
    google_project_service.required,
    google_cloud_run_v2_job_iam_member.batch_scheduler_runs_job,
  ]
}
