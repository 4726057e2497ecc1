terraform {
  required_version = ">= 1.9.0"

  # The state holds secrets in plain text (the random_password results: database password,
  # admin key, media signing key, webhook encryption key): keep it in a private bucket, not on a
  # laptop or in git.
  # Create the bucket once (uniform access, public access prevention, versioning), then
  # uncomment and `terraform init -migrate-state`:
  # backend "gcs" {
  #   bucket = "MY_PROJECT-animal-avatar-tfstate"
  #   prefix = "animal-avatar"
  # }

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = var.labels
}
