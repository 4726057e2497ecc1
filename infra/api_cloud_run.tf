# Optional (deploy_api = true): the API on Cloud Run, PostgreSQL on Cloud SQL reached over a
# private IP, secrets in Secret Manager, schema migrations as a Cloud Run job.
# For when one machine running `docker compose` is not enough (see README.md).

locals {
  api_count = var.deploy_api ? 1 : 0
  # The Cloud Run service's name, known before it exists: work_queue.tf derives its URL from it.
  api_service_name = "${var.name_prefix}-api"
  sql_database     = "animal_avatar"
  sql_user         = "animal_avatar"
  # A call to an internal-ingress function counts as internal only if it leaves through the VPC:
  # then all egress does (Google APIs and run.app via the subnet's Private Google Access, the
  # internet via Cloud NAT below). With an open function only private ranges take the VPC.
  api_egress = local.function_ingress == "ALLOW_ALL" ? "PRIVATE_RANGES_ONLY" : "ALL_TRAFFIC"
}

# --- network: Cloud Run egresses through this subnet to Cloud SQL's private IP -------------------

resource "google_compute_network" "api" {
  count = local.api_count

  project                 = var.project_id
  name                    = "${var.name_prefix}-api"
  auto_create_subnetworks = false

  depends_on = [google_project_service.required]
}

resource "google_compute_subnetwork" "api" {
  count = local.api_count

  project                  = var.project_id
  name                     = "${var.name_prefix}-api-${var.region}"
  region                   = var.region
  network                  = google_compute_network.api[0].id
  ip_cidr_range            = var.vpc_subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# The network only carries the API's egress: nothing may come in.
resource "google_compute_firewall" "api_deny_ingress" {
  count = local.api_count

  project   = var.project_id
  name      = "${var.name_prefix}-api-deny-ingress"
  network   = google_compute_network.api[0].id
  direction = "INGRESS"
  priority  = 65000

  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Webhook deliveries go to public https URLs. With ALL_TRAFFIC they leave through the VPC, whose
# instances have no external address: Cloud NAT gives them one. PRIVATE_RANGES_ONLY sends
# internet traffic out directly, so no NAT is made then.
resource "google_compute_router" "api" {
  count = var.deploy_api && local.api_egress == "ALL_TRAFFIC" ? 1 : 0

  project = var.project_id
  name    = "${var.name_prefix}-api-router"
  region  = var.region
  network = google_compute_network.api[0].id
}

resource "google_compute_router_nat" "api" {
  count = length(google_compute_router.api)

  project                            = var.project_id
  name                               = "${var.name_prefix}-api-nat"
  router                             = google_compute_router.api[0].name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  # Only the API's subnet; Google APIs stay on Private Google Access, which NAT does not take.
  subnetwork {
    name                    = google_compute_subnetwork.api[0].id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

resource "google_compute_global_address" "sql_peering" {
  count = local.api_count

  project       = var.project_id
  name          = "${var.name_prefix}-sql-peering"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.api[0].id
}

resource "google_service_networking_connection" "sql" {
  count = local.api_count

  network                 = google_compute_network.api[0].id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.sql_peering[0].name]
}

# --- Cloud SQL for PostgreSQL ------------------------------------------------------------------

resource "google_sql_database_instance" "api" {
  count = local.api_count

  project             = var.project_id
  name                = "${var.name_prefix}-postgres"
  region              = var.region
  database_version    = "POSTGRES_17"
  deletion_protection = true

  settings {
    edition                     = "ENTERPRISE"
    tier                        = var.sql_tier
    availability_type           = var.sql_availability_type
    disk_size                   = var.sql_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = true
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = google_compute_network.api[0].id
      enable_private_path_for_google_cloud_services = true
      ssl_mode                                      = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "03:00"
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = var.sql_backup_retention_count
      }
    }

    maintenance_window {
      day  = 7
      hour = 4
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    # What the CIS benchmark asks PostgreSQL to log.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
  }

  depends_on = [google_service_networking_connection.sql]
}

resource "google_sql_database" "api" {
  count = local.api_count

  project  = var.project_id
  name     = local.sql_database
  instance = google_sql_database_instance.api[0].name
}

resource "random_password" "sql" {
  count = local.api_count

  length  = 40
  special = false # it goes into DATABASE_URL unescaped
}

resource "google_sql_user" "api" {
  count = local.api_count

  project  = var.project_id
  name     = local.sql_user
  instance = google_sql_database_instance.api[0].name
  password = random_password.sql[0].result
}

# --- secrets: generated here, read by the API at start; `terraform output` never prints them ----

resource "random_password" "admin_api_key" {
  count = local.api_count

  length  = 48
  special = false
}

resource "random_password" "media_signing_key" {
  count = local.api_count

  length  = 48
  special = false
}

# Encrypts the webhooks' signing secrets in the database. No special characters: the API reads
# a comma-separated list of keys while this one is rotated (README: completion webhooks).
resource "random_password" "webhook_encryption_key" {
  count = local.api_count

  length  = 48
  special = false
}

locals {
  api_secret_values = var.deploy_api ? {
    DATABASE_URL = format( #checkov:skip=CKV_SECRET_4:A URL template; the password comes from random_password at apply time.
      "postgresql+psycopg://%s:%s@%s:5432/%s?sslmode=require",
      local.sql_user, random_password.sql[0].result,
      google_sql_database_instance.api[0].private_ip_address, local.sql_database,
    )
    ADMIN_API_KEY          = random_password.admin_api_key[0].result
    MEDIA_SIGNING_KEY      = random_password.media_signing_key[0].result
    WEBHOOK_ENCRYPTION_KEY = random_password.webhook_encryption_key[0].result
  } : {}
  # Keys known at plan time, so for_each works before the values exist.
  api_secret_names = var.deploy_api ? toset([
    "DATABASE_URL", "ADMIN_API_KEY", "MEDIA_SIGNING_KEY", "WEBHOOK_ENCRYPTION_KEY",
  ]) : toset([])
}

resource "google_secret_manager_secret" "api" {
  for_each = local.api_secret_names

  project   = var.project_id
  secret_id = "${var.name_prefix}-${lower(replace(each.key, "_", "-"))}"

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_secret_manager_secret_version" "api" {
  for_each = local.api_secret_names

  secret      = google_secret_manager_secret.api[each.key].id
  secret_data = local.api_secret_values[each.key]
}

resource "google_secret_manager_secret_iam_member" "api" {
  for_each = local.api_secret_names

  project   = var.project_id
  secret_id = google_secret_manager_secret.api[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.api_member
}

# --- the API service and its migrations job ----------------------------------------------------

locals {
  api_env = {
    ENVIRONMENT        = "production"
    FUNCTION_URL       = google_cloudfunctions2_function.main.service_config[0].uri
    FUNCTION_AUTH      = "id_token"
    FUNCTION_TIMEOUT_S = tostring(var.function_timeout_s)
    STORAGE_BACKEND    = "gcs"
    GCS_BUCKET         = google_storage_bucket.results.name
    SIGNED_URL_TTL_S   = tostring(var.signed_url_ttl_s)
    DATABASE_POOL_SIZE = tostring(var.api_database_pool_size)
    # The project of the trace names in the log lines (projects/P/traces/ID), by which Cloud
    # Logging links them to their request and to the function's lines of the same trace.
    GOOGLE_CLOUD_PROJECT = var.project_id
    # Async work through the Cloud Tasks queue (work_queue.tf); one(): null without deploy_api.
    WORK_QUEUE           = "cloud_tasks"
    CLOUD_TASKS_QUEUE    = one(google_cloud_tasks_queue.work[*].id) # projects/P/locations/L/queues/Q
    WORK_SERVICE_ACCOUNT = one(google_service_account.tasks[*].email)
    WORK_URL             = local.api_url
    # The tokens' audience: the service's URL, which Cloud Run's own invoker check accepts when
    # the API is not public (and a custom domain is a custom audience of the service).
    WORK_AUDIENCE     = local.api_url
    WORK_MAX_ATTEMPTS = tostring(var.work_queue_max_attempts)
    # Cloud Tasks waits for an answer as long as Cloud Run lets the request run; a retry claims
    # the `processing` record of a run cut off at that timeout only once it is older than that.
    WORK_DISPATCH_DEADLINE_S = tostring(var.api_request_timeout_s)
    GENERATION_STALE_AFTER_S = tostring(var.api_request_timeout_s)
  }
}

resource "google_cloud_run_v2_service" "api" {
  count = local.api_count

  project              = var.project_id
  name                 = local.api_service_name
  location             = var.region
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = var.api_public
  custom_audiences     = var.api_url == null ? null : [var.api_url]
  deletion_protection  = true

  template {
    service_account = local.api_service_account_email
    # A request may run one whole job: a synchronous generation, or a Cloud Tasks dispatch of
    # an async one (the function's timeout, the API's retries of it, storage and database).
    timeout                          = "${var.api_request_timeout_s}s"
    max_instance_request_concurrency = var.api_concurrency

    # Scale to zero is fine: no work runs outside a request (see cpu_idle below).
    scaling {
      min_instance_count = var.api_min_instances
      max_instance_count = var.api_max_instances
    }

    vpc_access {
      # All traffic when the function's ingress is internal (local.api_egress, above).
      egress = local.api_egress
      network_interfaces {
        network    = google_compute_network.api[0].id
        subnetwork = google_compute_subnetwork.api[0].id
      }
    }

    containers {
      image = var.api_image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.api_cpu
          memory = "${var.api_memory_mb}Mi"
        }
        # Request-based billing: CPU only while requests run. The API no longer works after its
        # answer: async work arrives as Cloud Tasks requests to /internal/work, and the queue's
        # retries replace the in-process recovery sweep (README: the work queue).
        cpu_idle = true
        # Scaling from zero: a faster cold start for the first request.
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.api_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.api_secret_names
        content {
          name = env.value
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.api[env.value].secret_id
              version = "latest"
            }
          }
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 5
        failure_threshold = 12
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds = 30
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.api_image != null
      error_message = "deploy_api = true needs api_image (the API image built from this repository's Dockerfile: docker build --target api)."
    }
    precondition {
      # The API retries the function only within its first 10 s (FUNCTION_RETRY_BUDGET_S).
      condition     = var.api_request_timeout_s >= var.function_timeout_s + 30
      error_message = "api_request_timeout_s must cover one job: function_timeout_s, plus the API's 10 s retry budget and its storage and database calls (at least function_timeout_s + 30)."
    }
  }

  depends_on = [
    google_secret_manager_secret_version.api,
    google_secret_manager_secret_iam_member.api,
    google_sql_database.api,
    google_sql_user.api,
    # An instance re-offers unfinished work to the queue as it starts.
    google_cloud_tasks_queue_iam_member.api_enqueuer,
    google_service_account_iam_member.api_acts_as_tasks,
    # Webhook deliveries reach the internet through it from the first request (ALL_TRAFFIC).
    google_compute_router_nat.api,
  ]
}

# Run before each new API revision: gcloud run jobs execute <name> --region <region> --wait
resource "google_cloud_run_v2_job" "migrate" {
  count = local.api_count

  project             = var.project_id
  name                = "${var.name_prefix}-api-migrate"
  location            = var.region
  deletion_protection = false

  template {
    task_count = 1

    template {
      service_account = local.api_service_account_email
      max_retries     = 1
      timeout         = "600s"

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = google_compute_network.api[0].id
          subnetwork = google_compute_subnetwork.api[0].id
        }
      }

      containers {
        image   = var.api_image
        command = ["alembic", "-c", "api/alembic.ini", "upgrade", "head"]

        dynamic "env" {
          for_each = local.api_env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.api_secret_names
          content {
            name = env.value
            value_source {
              secret_key_ref {
                secret  = google_secret_manager_secret.api[env.value].secret_id
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_version.api,
    google_secret_manager_secret_iam_member.api,
    google_sql_database.api,
    google_sql_user.api,
  ]
}
