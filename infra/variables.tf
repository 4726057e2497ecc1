# --- project -----------------------------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "Google Cloud project that holds every resource."
}

variable "region" {
  type        = string
  description = "Region of the function, the buckets and (with deploy_api) Cloud Run and Cloud SQL."
  default     = "us-central1"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of resource names; bucket names also get the project id, so they are globally unique."
  default     = "avatar"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix: 2-15 characters, lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every resource that takes labels."
  default     = { app = "animal-avatar" }
}

# --- results bucket ----------------------------------------------------------------------------

variable "results_retention_days" {
  type        = number
  description = "Generated avatars are deleted this many days after they were written."
  default     = 30

  validation {
    condition     = var.results_retention_days >= 1 && floor(var.results_retention_days) == var.results_retention_days
    error_message = "results_retention_days must be a whole number of days, at least 1."
  }
}

variable "force_destroy_buckets" {
  type        = bool
  description = "Let `terraform destroy` delete buckets that still hold objects (for throw-away projects)."
  default     = false
}

# --- function ----------------------------------------------------------------------------------

variable "function_name" {
  type        = string
  description = "Name of the Cloud Function (and of its underlying Cloud Run service)."
  default     = "generate-animal-avatar"
}

variable "function_runtime" {
  type        = string
  description = "Python runtime of the function."
  default     = "python312"

  validation {
    condition     = contains(["python311", "python312", "python313"], var.function_runtime)
    error_message = "function_runtime must be python311, python312 or python313."
  }
}

variable "function_memory_mb" {
  type        = number
  description = "Memory of one function instance, in MiB."
  default     = 1024
}

variable "function_cpu" {
  type        = string
  description = "vCPUs of one function instance (at least 1 when function_concurrency > 1)."
  default     = "1"
}

variable "function_timeout_s" {
  type        = number
  description = "Longest a request may run, in seconds; the Vertex AI deadline is set 5 s below it."
  default     = 60

  validation {
    condition     = var.function_timeout_s >= 15 && var.function_timeout_s <= 3600
    error_message = "function_timeout_s must be between 15 and 3600."
  }
}

variable "function_concurrency" {
  type        = number
  description = "Requests one instance serves at once (max_instance_request_concurrency)."
  default     = 8
}

variable "function_min_instances" {
  type        = number
  description = "Instances kept warm (0 scales to zero and accepts cold starts)."
  default     = 0
}

variable "function_max_instances" {
  type        = number
  description = "Upper bound on instances: caps cost and the load on Vertex AI quotas."
  default     = 10
}

variable "function_ingress" {
  type        = string
  description = "Who may reach the function's URL at the network level; IAM still admits only the API's identity. null picks ALLOW_INTERNAL_AND_GCLB with deploy_api (the API on Cloud Run egresses through the project's VPC) and ALLOW_ALL otherwise (an API outside Google Cloud must reach the URL). ALLOW_INTERNAL_* needs the API inside the project's VPC."
  default     = null

  validation {
    condition     = var.function_ingress == null || contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.function_ingress)
    error_message = "function_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "vertex_location" {
  type        = string
  description = "Vertex AI location of the image model (GCP_LOCATION)."
  default     = "us-central1"
}

variable "vertex_model" {
  type        = string
  description = "Gemini image model on Vertex AI that draws the animal (VERTEX_MODEL)."
  default     = "gemini-2.5-flash-image"
}

variable "compose_fallback" {
  type        = string
  description = "What the function does when Vertex AI refuses or fails: `local` draws the procedural character, `none` returns the error."
  default     = "local"

  validation {
    condition     = contains(["local", "none"], var.compose_fallback)
    error_message = "compose_fallback must be local or none."
  }
}

variable "signed_url_ttl_s" {
  type        = number
  description = "Lifetime of the V4 signed URLs of results, in seconds (at most 7 days)."
  default     = 3600

  validation {
    condition     = var.signed_url_ttl_s >= 60 && var.signed_url_ttl_s <= 604800
    error_message = "signed_url_ttl_s must be between 60 and 604800."
  }
}

# --- the API's identity ------------------------------------------------------------------------

variable "api_service_account_email" {
  type        = string
  description = "An existing service account of this project the API already runs as (a VM's, a GKE workload's); null creates one. It alone may invoke the function."
  default     = null

  validation {
    condition     = var.api_service_account_email == null || can(regex("^[^@]+@[^@]+\\.iam\\.gserviceaccount\\.com$", var.api_service_account_email))
    error_message = "api_service_account_email must be a service account email (...@PROJECT.iam.gserviceaccount.com)."
  }
}

# --- optional: the API on Cloud Run with Cloud SQL ---------------------------------------------

variable "deploy_api" {
  type        = bool
  description = "Also run the API on Cloud Run with Cloud SQL for PostgreSQL (see README: when one machine is not enough)."
  default     = false
}

variable "api_image" {
  type        = string
  description = "Container image of the API (this repository's Dockerfile, target api: docker build --target api) in Artifact Registry; required when deploy_api is true."
  default     = null
}

variable "api_public" {
  type        = bool
  description = "Serve the API to the internet by turning off Cloud Run's invoker IAM check (the API authenticates its callers with API keys)."
  default     = true
}

variable "api_memory_mb" {
  type        = number
  description = "Memory of one API instance, in MiB."
  default     = 512
}

variable "api_cpu" {
  type        = string
  description = "vCPUs of one API instance."
  default     = "1"
}

variable "api_concurrency" {
  type        = number
  description = "Requests one API instance serves at once."
  default     = 80
}

variable "api_min_instances" {
  type        = number
  description = "API instances kept running; 0 scales to zero (async work arrives as Cloud Tasks requests, so none has to stay up), 1 or more trades cost for no cold starts."
  default     = 0

  validation {
    condition     = var.api_min_instances >= 0 && floor(var.api_min_instances) == var.api_min_instances
    error_message = "api_min_instances must be a whole number, 0 or more."
  }
}

variable "api_max_instances" {
  type        = number
  description = "Upper bound on API instances; keep api_max_instances x api_database_pool_size under Cloud SQL's max_connections (100 on the default tier)."
  default     = 10
}

variable "api_database_pool_size" {
  type        = number
  description = "Database connections one API instance keeps (DATABASE_POOL_SIZE)."
  default     = 5
}

variable "api_request_timeout_s" {
  type        = number
  description = "Longest an API request may run, in seconds: one job, i.e. a synchronous generation or a Cloud Tasks dispatch of an async one, waits for the function (at least function_timeout_s + 30). Also the queue's dispatch deadline and the age after which a retry takes over a cut-off run."
  default     = 120

  validation {
    # Cloud Run allows 3600 s, but a Cloud Tasks dispatch deadline at most 1800 s.
    condition     = var.api_request_timeout_s >= 15 && var.api_request_timeout_s <= 1800 && floor(var.api_request_timeout_s) == var.api_request_timeout_s
    error_message = "api_request_timeout_s must be a whole number of seconds between 15 and 1800 (the longest Cloud Tasks dispatch deadline)."
  }
}

variable "api_url" {
  type        = string
  description = "The API's own base URL, as Cloud Tasks calls it (WORK_URL): a custom domain mapped to the service, e.g. https://api.example.com; null uses Cloud Run's deterministic URL https://NAME_PREFIX-api-PROJECT_NUMBER.REGION.run.app."
  default     = null

  validation {
    condition     = var.api_url == null || can(regex("^https://[a-z0-9.-]+$", var.api_url))
    error_message = "api_url must be https://HOST in lower case, without a path or a trailing slash."
  }
}

variable "vpc_subnet_cidr" {
  type        = string
  description = "Range of the subnet the API's Cloud Run instances egress through to reach Cloud SQL's private IP."
  default     = "10.10.0.0/24"
}

variable "sql_tier" {
  type        = string
  description = "Cloud SQL machine tier (Enterprise edition)."
  default     = "db-custom-1-3840"
}

variable "sql_availability_type" {
  type        = string
  description = "ZONAL, or REGIONAL for a standby in another zone."
  default     = "REGIONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.sql_availability_type)
    error_message = "sql_availability_type must be ZONAL or REGIONAL."
  }
}

variable "sql_disk_size_gb" {
  type        = number
  description = "Initial disk of the Cloud SQL instance, in GB (it grows automatically)."
  default     = 20
}

variable "sql_backup_retention_count" {
  type        = number
  description = "Daily backups Cloud SQL keeps."
  default     = 14
}

# --- with deploy_api: the Cloud Tasks queue of the API's async work -----------------------------

variable "work_queue_max_dispatches_per_second" {
  type        = number
  description = "Most jobs the queue starts per second (generations and webhook deliveries): keep generations under the Vertex AI image model's requests-per-minute quota / 60."
  default     = 10

  validation {
    condition     = var.work_queue_max_dispatches_per_second > 0 && var.work_queue_max_dispatches_per_second <= 500
    error_message = "work_queue_max_dispatches_per_second must be above 0 and at most 500 (Cloud Tasks' limit)."
  }
}

variable "work_queue_max_concurrent_dispatches" {
  type        = number
  description = "Most jobs running at once; keep it under what the function serves at once (function_max_instances x function_concurrency), which synchronous calls share."
  default     = 50

  validation {
    condition     = var.work_queue_max_concurrent_dispatches >= 1 && var.work_queue_max_concurrent_dispatches <= 5000 && floor(var.work_queue_max_concurrent_dispatches) == var.work_queue_max_concurrent_dispatches
    error_message = "work_queue_max_concurrent_dispatches must be a whole number from 1 to 5000 (Cloud Tasks' limit)."
  }
}

variable "work_queue_max_attempts" {
  type        = number
  description = "Runs of one job before it is given up; the API gets it as WORK_MAX_ATTEMPTS and records the failure on the last one."
  default     = 10

  validation {
    condition     = var.work_queue_max_attempts >= 1 && floor(var.work_queue_max_attempts) == var.work_queue_max_attempts
    error_message = "work_queue_max_attempts must be a whole number, at least 1 (not -1: the API records the failure on the last attempt)."
  }
}

variable "work_queue_min_backoff_s" {
  type        = number
  description = "Wait before the first retry of a failed job, in seconds; it doubles from there (work_queue_max_doublings times) up to work_queue_max_backoff_s."
  default     = 10

  validation {
    condition     = var.work_queue_min_backoff_s >= 1 && floor(var.work_queue_min_backoff_s) == var.work_queue_min_backoff_s
    error_message = "work_queue_min_backoff_s must be a whole number of seconds, at least 1."
  }
}

variable "work_queue_max_backoff_s" {
  type        = number
  description = "Longest wait between two runs of a failed job, in seconds."
  default     = 300

  validation {
    condition     = var.work_queue_max_backoff_s >= var.work_queue_min_backoff_s && floor(var.work_queue_max_backoff_s) == var.work_queue_max_backoff_s
    error_message = "work_queue_max_backoff_s must be a whole number of seconds, at least work_queue_min_backoff_s."
  }
}

variable "work_queue_max_doublings" {
  type        = number
  description = "How many times the wait between retries doubles before it grows linearly to work_queue_max_backoff_s (10 s doubled 5 times reaches the 300 s cap)."
  default     = 5

  validation {
    condition     = var.work_queue_max_doublings >= 0 && floor(var.work_queue_max_doublings) == var.work_queue_max_doublings
    error_message = "work_queue_max_doublings must be a whole number, 0 or more."
  }
}

variable "work_queue_log_sampling_ratio" {
  type        = number
  description = "Share of the queue's dispatch attempts logged to Cloud Logging (0 none, 1 all): each entry names the task and its HTTP status, never the body or the token."
  default     = 1

  validation {
    condition     = var.work_queue_log_sampling_ratio >= 0 && var.work_queue_log_sampling_ratio <= 1
    error_message = "work_queue_log_sampling_ratio must be between 0 and 1."
  }
}

# --- optional: the batch job on Cloud Run jobs (batch.tf) ----------------------------------------

variable "deploy_batch" {
  type        = bool
  description = "Also deploy the batch job (python -m batch) as a Cloud Run job, with its own service account and, with batch_schedule, a Cloud Scheduler trigger (see README: the batch job)."
  default     = false
}

variable "batch_image" {
  type        = string
  description = "Container image of the batch job (this repository's Dockerfile, target batch: docker build --target batch) in Artifact Registry; required when deploy_batch is true."
  default     = null

  validation {
    condition     = var.batch_image != null || !var.deploy_batch
    error_message = "deploy_batch = true needs batch_image (the image built with docker build --target batch, pushed to Artifact Registry)."
  }
}

variable "batch_input" {
  type        = string
  description = "The images the batch job reads: gs://BUCKET/PREFIX/ (any bucket with uniform bucket-level access; the job may only get and list objects under that prefix). Required when deploy_batch is true."
  default     = null

  validation {
    condition     = var.batch_input != null || !var.deploy_batch
    error_message = "deploy_batch = true needs batch_input, the gs://BUCKET/PREFIX/ of the images to process."
  }

  validation {
    condition     = var.batch_input == null || can(regex("^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^/]+)*/?$", var.batch_input))
    error_message = "batch_input must be gs://BUCKET or gs://BUCKET/PREFIX/ (no empty path segment)."
  }

  validation {
    # The job's outputs must not become its inputs, whichever holds the other.
    condition = var.batch_input == null || (
      !startswith(
        "${trimsuffix(coalesce(var.batch_output, "gs://${var.project_id}-${var.name_prefix}-results/batch"), "/")}/",
        "${trimsuffix(coalesce(var.batch_input, "gs://-"), "/")}/",
      ) &&
      !startswith(
        "${trimsuffix(coalesce(var.batch_input, "gs://-"), "/")}/",
        "${trimsuffix(coalesce(var.batch_output, "gs://${var.project_id}-${var.name_prefix}-results/batch"), "/")}/",
      )
    )
    error_message = "batch_input and batch_output must not overlap: neither prefix may hold the other (the job would read its own results)."
  }
}

variable "batch_output" {
  type        = string
  description = "Where the batch job writes its images and manifest parts: a gs://RESULTS_BUCKET/PREFIX/ of this stack's results bucket (the only bucket it may write to, and only under that prefix); null is gs://RESULTS_BUCKET/batch/. Objects there age out after results_retention_days like every result."
  default     = null

  validation {
    condition     = var.batch_output == null || can(regex("^gs://${var.project_id}-${var.name_prefix}-results(/[^/]+)+/?$", var.batch_output))
    error_message = "batch_output must be gs://PROJECT_ID-NAME_PREFIX-results/PREFIX/ (a prefix of this stack's results bucket, not the whole bucket)."
  }

  validation {
    # Those prefixes hold the users' avatars and kept uploads (the API erases them by prefix).
    condition     = var.batch_output == null || !can(regex("^gs://[^/]+/(avatars|uploads)(/|$)", var.batch_output))
    error_message = "batch_output must not be under avatars/ or uploads/ of the results bucket: those hold the users' images."
  }
}

variable "batch_animals" {
  type        = string
  description = "The animals each image gets (--animal): one name, a comma list (cat,fox) or all."
  default     = "all"

  validation {
    condition     = can(regex("^(all|[a-z]+(,[a-z]+)*)$", var.batch_animals))
    error_message = "batch_animals must be all, an animal name, or a comma list of names (lower case, no spaces)."
  }
}

variable "batch_task_count" {
  type        = number
  description = "Tasks of one execution: the inputs are split in this many disjoint shares (by a hash of each name), one per task, each writing its own manifest part."
  default     = 4

  validation {
    condition     = var.batch_task_count >= 1 && var.batch_task_count <= 10000 && floor(var.batch_task_count) == var.batch_task_count
    error_message = "batch_task_count must be a whole number from 1 to 10000 (Cloud Run's limit)."
  }
}

variable "batch_parallelism" {
  type        = number
  description = "Tasks running at once (at most batch_task_count); each holds batch_cpu vCPUs, so this bounds the job's share of the region's Cloud Run CPU quota."
  default     = 4

  validation {
    condition     = var.batch_parallelism >= 1 && var.batch_parallelism <= var.batch_task_count && floor(var.batch_parallelism) == var.batch_parallelism
    error_message = "batch_parallelism must be a whole number from 1 to batch_task_count."
  }
}

variable "batch_task_timeout_s" {
  type        = number
  description = "Longest one task (one share of the inputs) may run, in seconds, before Cloud Run stops it and retries it (batch_max_retries); a retried task skips what its manifest part already holds."
  default     = 3600

  validation {
    condition     = var.batch_task_timeout_s >= 60 && var.batch_task_timeout_s <= 86400 && floor(var.batch_task_timeout_s) == var.batch_task_timeout_s
    error_message = "batch_task_timeout_s must be a whole number of seconds from 60 to 86400 (24 h)."
  }
}

variable "batch_max_retries" {
  type        = number
  description = "Runs of a failed task after its first (a task fails when the job exits non-zero or passes batch_task_timeout_s; failed images are manifest lines, not task failures)."
  default     = 3

  validation {
    condition     = var.batch_max_retries >= 0 && var.batch_max_retries <= 10 && floor(var.batch_max_retries) == var.batch_max_retries
    error_message = "batch_max_retries must be a whole number from 0 to 10 (Cloud Run's limit)."
  }
}

variable "batch_cpu" {
  type        = string
  description = "vCPUs of one task; the job starts one worker process per vCPU (--workers)."
  default     = "2"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.batch_cpu)
    error_message = "batch_cpu must be 1, 2, 4, 6 or 8."
  }
}

variable "batch_memory_mb" {
  type        = number
  description = "Memory of one task, in MiB: each worker holds the face models and one decoded image (up to MAX_PIXELS x 4 bytes, 200 MB at 50 MP), so about 1 GiB per vCPU."
  default     = 4096

  validation {
    # Cloud Run's bounds: at most 4 GiB per vCPU; 4 vCPUs need 2 GiB, 6 and 8 need 4 GiB.
    condition = (
      floor(var.batch_memory_mb) == var.batch_memory_mb && var.batch_memory_mb >= 512 &&
      var.batch_memory_mb <= 4096 * try(tonumber(var.batch_cpu), 8) &&
      var.batch_memory_mb >= lookup({ "4" = 2048, "6" = 4096, "8" = 4096 }, var.batch_cpu, 512)
    )
    error_message = "batch_memory_mb must be a whole number of MiB from 512 to 4096 x batch_cpu, and at least 2048 with 4 vCPUs, 4096 with 6 or 8."
  }
}

variable "batch_schedule" {
  type        = string
  description = "When Cloud Scheduler starts the batch job, in cron syntax (e.g. \"0 3 * * *\", every night at 3:00 in batch_time_zone); null creates no scheduler: run it by hand (gcloud run jobs execute)."
  default     = null

  validation {
    condition     = var.batch_schedule == null || can(regex("^\\S+(\\s+\\S+){4}$", trimspace(coalesce(var.batch_schedule, "-"))))
    error_message = "batch_schedule must be a cron expression of five fields (minute hour day-of-month month day-of-week), or null."
  }
}

variable "batch_time_zone" {
  type        = string
  description = "Time zone of batch_schedule, a tz database name (Europe/Paris, America/New_York)."
  default     = "Etc/UTC"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.batch_time_zone))
    error_message = "batch_time_zone must be a tz database name such as Etc/UTC or Europe/Paris."
  }
}
