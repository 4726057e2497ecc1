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
