output "function_uri" {
  description = "HTTPS URL of the function: the API's FUNCTION_URL (with FUNCTION_AUTH=id_token)."
  value       = google_cloudfunctions2_function.main.service_config[0].uri
}

output "function_name" {
  description = "Name of the Cloud Function."
  value       = google_cloudfunctions2_function.main.name
}

output "results_bucket" {
  description = "Private bucket of generated avatars: the API's and the function's GCS_BUCKET."
  value       = google_storage_bucket.results.name
}

output "function_service_account_email" {
  description = "Service account the function runs as."
  value       = google_service_account.function.email
}

output "api_service_account_email" {
  description = "The API's identity: the only principal allowed to invoke the function. Run the API as it."
  value       = local.api_service_account_email
}

output "api_url" {
  description = "URL of the API on Cloud Run, the service's own run.app URL even when var.api_url names a custom domain (which Cloud Tasks then calls instead); null unless deploy_api."
  value       = one(google_cloud_run_v2_service.api[*].uri)
}

output "api_migrate_job" {
  description = "Cloud Run job that applies the database migrations (null unless deploy_api)."
  value       = one(google_cloud_run_v2_job.migrate[*].name)
}

output "api_secret_ids" {
  description = "Secret Manager secrets of the API (DATABASE_URL, ADMIN_API_KEY, MEDIA_SIGNING_KEY, WEBHOOK_ENCRYPTION_KEY); read one with gcloud secrets versions access latest --secret=ID."
  value       = { for name, secret in google_secret_manager_secret.api : name => secret.secret_id }
}

output "work_queue" {
  description = "Cloud Tasks queue of the API's async work, projects/P/locations/L/queues/Q (null unless deploy_api): gcloud tasks queues describe|pause|resume it."
  value       = one(google_cloud_tasks_queue.work[*].id)
}

output "tasks_service_account_email" {
  description = "The identity of the work queue's OIDC tokens, the only caller /internal/work accepts (null unless deploy_api)."
  value       = one(google_service_account.tasks[*].email)
}

output "batch_job" {
  description = "Cloud Run job of the batch job (null unless deploy_batch): gcloud run jobs execute NAME --region REGION --wait."
  value       = one(google_cloud_run_v2_job.batch[*].name)
}

output "batch_output" {
  description = "Where the batch job writes its images and manifest parts, gs://RESULTS_BUCKET/PREFIX/ (null unless deploy_batch)."
  value       = var.deploy_batch ? local.batch_output_url : null
}

output "batch_service_account_email" {
  description = "The batch job's identity: reads batch_input, writes batch_output, nothing else (null unless deploy_batch)."
  value       = one(google_service_account.batch[*].email)
}
