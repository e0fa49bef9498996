# Terraform >= 1.11: the API key is written with a write-only argument (secret_data_wo)
# from an ephemeral value, so it is never stored in the state or shown in a plan; and
# variable validations compare variables with each other (>= 1.9).
terraform {
  required_version = ">= 1.11.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    # Only for google_project_service_identity (the Pub/Sub service agent), which the
    # GA provider does not have in 6.x.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.50"
    }
    # >= 2.5: the source archive is built from `source` blocks (an allow-list).
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
    # >= 3.7: the ephemeral random_password.
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
    # time_sleep: waits for enabled APIs and new IAM grants to propagate.
    time = {
      source  = "hashicorp/time"
      version = "~> 0.13"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
