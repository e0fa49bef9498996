variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the functions, the Cloud Tasks queue, the source bucket and the Firestore database."
  type        = string
  default     = "europe-west1"
}

variable "name" {
  description = "Prefix of every resource name, and the Firestore collection prefix (REFLUXO_COLLECTION_PREFIX)."
  type        = string
  default     = "refluxo"

  validation {
    # At most 15 characters: "<name>-events-trigger" must fit a 30-character service account id,
    # and "<name>-dispatcher-<project number>" a 63-character DNS label (the deterministic URL).
    condition     = can(regex("^[a-z][a-z0-9-]{0,13}[a-z0-9]$", var.name))
    error_message = "name must be 2-15 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "api_invoker_members" {
  description = "IAM members (user:, group:, serviceAccount:, domain:, principal...) allowed to call the API function. Never public."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for member in var.api_invoker_members :
      !contains(["allUsers", "allAuthenticatedUsers"], member)
    ])
    error_message = "The API is never public: allUsers and allAuthenticatedUsers are refused."
  }

  validation {
    condition = alltrue([
      for member in var.api_invoker_members :
      can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+", member))
    ])
    error_message = "Each member must be an IAM member string such as user:alice@example.com or serviceAccount:ci@p.iam.gserviceaccount.com."
  }
}

variable "function_timeout_seconds" {
  description = "Request timeout of the functions (REFLUXO_FUNCTION_TIMEOUT_S). A step must finish within it."
  type        = number
  default     = 60

  validation {
    condition     = var.function_timeout_seconds >= 1 && var.function_timeout_seconds <= 3600
    error_message = "function_timeout_seconds must be between 1 and 3600 (the HTTP function maximum)."
  }
}

variable "max_instances" {
  description = "Maximum number of instances of each function."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "function_memory" {
  description = "Memory of each function instance (Cloud Functions available_memory)."
  type        = string
  default     = "512M"
}

variable "app" {
  description = "The user's refluxo App as module:attribute, importable from the source root (REFLUXO_APP)."
  type        = string
  default     = "examples.app:app"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$", var.app))
    error_message = "app must be module:attribute, for example examples.app:app."
  }
}

variable "source_dir" {
  description = "Directory zipped as the functions' source (main.py, refluxo/, examples/, requirements.txt). null means the repository root, path.module/.."
  type        = string
  default     = null
}

variable "tasks_max_attempts" {
  description = "Cloud Tasks attempts per step task (first try included) before the queue gives up."
  type        = number
  default     = 100
}

variable "tasks_max_dispatches_per_second" {
  description = "Cloud Tasks queue dispatch rate."
  type        = number
  default     = 50
}

variable "tasks_max_concurrent_dispatches" {
  description = "Cloud Tasks queue concurrency (steps running at once)."
  type        = number
  default     = 100
}

variable "tasks_log_sampling_ratio" {
  description = "Fraction of task attempts logged to Cloud Logging (0.0-1.0)."
  type        = number
  default     = 1.0

  validation {
    condition     = var.tasks_log_sampling_ratio >= 0 && var.tasks_log_sampling_ratio <= 1
    error_message = "tasks_log_sampling_ratio must be between 0 and 1."
  }
}

variable "events_max_delivery_attempts" {
  description = "Pub/Sub deliveries of a start/resume message to the events function before it is dead-lettered (5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.events_max_delivery_attempts >= 5 && var.events_max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}

variable "build_service_account" {
  description = "Optional service account (projects/P/serviceAccounts/EMAIL) Cloud Build uses to build the functions; null keeps the Cloud Functions default."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the Firestore database and the API key secret from deletion."
  type        = bool
  default     = true
}

variable "force_destroy_source_bucket" {
  description = "Let terraform destroy delete the source bucket even when it holds objects."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Extra labels for the resources that take labels."
  type        = map(string)
  default     = {}
}
