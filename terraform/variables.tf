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
  description = "Request timeout of the functions (REFLUXO_FUNCTION_TIMEOUT_S). A step must finish within it. Cloud Tasks waits this plus tasks_dispatch_margin_seconds for the dispatcher's answer, at most 1800 s."
  type        = number
  default     = 60

  validation {
    condition     = var.function_timeout_seconds >= 1 && floor(var.function_timeout_seconds) == var.function_timeout_seconds
    error_message = "function_timeout_seconds must be a whole number of seconds, at least 1."
  }

  validation {
    condition     = var.function_timeout_seconds + var.tasks_dispatch_margin_seconds <= 1800
    error_message = "function_timeout_seconds + tasks_dispatch_margin_seconds must be at most 1800: Cloud Tasks waits at most 30 minutes for an HTTP task, and a step cut short by it would be retried while it still runs."
  }
}

variable "tasks_dispatch_margin_seconds" {
  description = "How much longer than the function timeout Cloud Tasks waits for the dispatcher (dispatch deadline = timeout + margin, REFLUXO_DISPATCH_DEADLINE_S): room for a cold start before the step begins."
  type        = number
  default     = 60

  validation {
    condition     = var.tasks_dispatch_margin_seconds >= 15 && var.tasks_dispatch_margin_seconds <= 600 && floor(var.tasks_dispatch_margin_seconds) == var.tasks_dispatch_margin_seconds
    error_message = "tasks_dispatch_margin_seconds must be a whole number between 15 and 600."
  }
}

variable "max_instances" {
  description = "Maximum number of instances of each function."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number between 1 and 1000."
  }
}

variable "function_cpu" {
  description = "vCPUs of each function instance (available_cpu). Serving more than one request at a time needs at least 1."
  type        = string
  default     = "1"

  validation {
    condition     = can(tonumber(var.function_cpu)) && try(tonumber(var.function_cpu) > 0 && tonumber(var.function_cpu) <= 8, false)
    error_message = "function_cpu must be a number of vCPUs between 0.083 and 8, written as a string (\"1\", \"2\")."
  }
}

variable "function_memory" {
  description = "Memory of each function instance (available_memory), for example 1Gi or 512M."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[1-9][0-9]*(M|Mi|G|Gi)$", var.function_memory))
    error_message = "function_memory must be a size such as 512M, 1Gi or 2Gi."
  }
}

variable "api_concurrency" {
  description = "Requests one API instance serves at once (Cloud Run concurrency and the server's THREADS)."
  type        = number
  default     = 16

  validation {
    condition     = var.api_concurrency >= 1 && var.api_concurrency <= 1000 && floor(var.api_concurrency) == var.api_concurrency
    error_message = "api_concurrency must be a whole number between 1 and 1000."
  }

  validation {
    condition     = var.api_concurrency == 1 || try(tonumber(var.function_cpu), 0) >= 1
    error_message = "Cloud Run serves one request at a time below 1 vCPU: set function_cpu to at least \"1\" or api_concurrency to 1."
  }
}

variable "dispatcher_concurrency" {
  description = "Steps one dispatcher instance runs at once (Cloud Run concurrency and the server's THREADS). The queue dispatches at most max_instances x this many steps at once."
  type        = number
  default     = 8

  validation {
    condition     = var.dispatcher_concurrency >= 1 && var.dispatcher_concurrency <= 1000 && floor(var.dispatcher_concurrency) == var.dispatcher_concurrency
    error_message = "dispatcher_concurrency must be a whole number between 1 and 1000."
  }

  validation {
    condition     = var.dispatcher_concurrency == 1 || try(tonumber(var.function_cpu), 0) >= 1
    error_message = "Cloud Run serves one request at a time below 1 vCPU: set function_cpu to at least \"1\" or dispatcher_concurrency to 1."
  }

  validation {
    condition     = var.max_instances * var.dispatcher_concurrency <= 5000
    error_message = "max_instances x dispatcher_concurrency is the queue's max_concurrent_dispatches, at most 5000."
  }
}

variable "events_concurrency" {
  description = "Pub/Sub pushes one events instance handles at once (Cloud Run concurrency and the server's THREADS)."
  type        = number
  default     = 8

  validation {
    condition     = var.events_concurrency >= 1 && var.events_concurrency <= 1000 && floor(var.events_concurrency) == var.events_concurrency
    error_message = "events_concurrency must be a whole number between 1 and 1000."
  }

  validation {
    condition     = var.events_concurrency == 1 || try(tonumber(var.function_cpu), 0) >= 1
    error_message = "Cloud Run serves one request at a time below 1 vCPU: set function_cpu to at least \"1\" or events_concurrency to 1."
  }
}

variable "app" {
  description = "The user's refluxo App as module:attribute, importable from source_dir (REFLUXO_APP). Its files must be matched by app_source_patterns. The default is the example app shipped in the package."
  type        = string
  default     = "refluxo.examples.app:app"

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$", var.app))
    error_message = "app must be module:attribute, for example myapp:app."
  }
}

variable "app_source_patterns" {
  description = "fileset() patterns, relative to the source directory, of the App's files deployed with main.py, requirements.txt and refluxo/ (for example [\"myapp/**\", \"workflows/*.json\"]). Hidden files, byte code, keys, Terraform state and variables are never deployed."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for pattern in var.app_source_patterns :
      can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_.*?-]+)*$", pattern)) && !can(regex("(^|/)\\.\\.(/|$)", pattern))
    ])
    error_message = "Each pattern must start with a file or directory name (not a wildcard, not /, not ..), for example myapp/** or workflows/*.json."
  }
}

variable "source_dir" {
  description = "The project directory the functions' files are taken from: its main.py, requirements.txt and the App's files (app_source_patterns). Set it when using this directory as a module from your own repository (for example source_dir = path.root). null means the refluxo repository itself, path.module/.."
  type        = string
  default     = null
}

variable "tasks_max_attempts" {
  description = "Attempts of a step task (the first one included) before the queue deletes it; the task's last attempt comes tasks_retry_bound.last_attempt_after_s after its first."
  type        = number
  default     = 20

  validation {
    condition     = var.tasks_max_attempts >= 2 && var.tasks_max_attempts <= 100 && floor(var.tasks_max_attempts) == var.tasks_max_attempts
    error_message = "tasks_max_attempts must be a whole number between 2 and 100."
  }

  validation {
    condition     = var.tasks_max_attempts >= var.tasks_max_platform_retries + 3
    error_message = "tasks_max_attempts must be at least tasks_max_platform_retries + 3: the first attempt, the platform retries, the attempt that fails the node and one spare for it."
  }
}

variable "tasks_max_platform_retries" {
  description = "Platform retries of a step (X-CloudTasks-TaskRetryCount) the dispatcher tolerates; at the next one it fails the node by its retry policy (REFLUXO_MAX_PLATFORM_RETRIES)."
  type        = number
  default     = 10

  validation {
    condition     = var.tasks_max_platform_retries >= 0 && floor(var.tasks_max_platform_retries) == var.tasks_max_platform_retries
    error_message = "tasks_max_platform_retries must be a whole number, at least 0."
  }
}

variable "tasks_min_backoff_seconds" {
  description = "Wait before a step task's first retry."
  type        = number
  default     = 1

  validation {
    condition     = var.tasks_min_backoff_seconds >= 1 && floor(var.tasks_min_backoff_seconds) == var.tasks_min_backoff_seconds
    error_message = "tasks_min_backoff_seconds must be a whole number, at least 1."
  }
}

variable "tasks_max_backoff_seconds" {
  description = "Longest wait between two attempts of a step task."
  type        = number
  default     = 300

  validation {
    condition     = var.tasks_max_backoff_seconds >= var.tasks_min_backoff_seconds && var.tasks_max_backoff_seconds <= 3600 && floor(var.tasks_max_backoff_seconds) == var.tasks_max_backoff_seconds
    error_message = "tasks_max_backoff_seconds must be a whole number between tasks_min_backoff_seconds and 3600."
  }
}

variable "tasks_max_doublings" {
  description = "How many times the wait between attempts doubles before it grows linearly (Cloud Tasks max_doublings)."
  type        = number
  default     = 8

  validation {
    condition     = var.tasks_max_doublings >= 0 && var.tasks_max_doublings <= 16 && floor(var.tasks_max_doublings) == var.tasks_max_doublings
    error_message = "tasks_max_doublings must be a whole number between 0 and 16."
  }
}

variable "tasks_max_dispatches_per_second" {
  description = "Cloud Tasks queue dispatch rate."
  type        = number
  default     = 50

  validation {
    condition     = var.tasks_max_dispatches_per_second > 0 && var.tasks_max_dispatches_per_second <= 500
    error_message = "tasks_max_dispatches_per_second must be above 0 and at most 500."
  }
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

variable "run_retention_days" {
  description = "Days a finished run and its results are kept before Firestore's TTL deletes them (REFLUXO_RUN_RETENTION_DAYS; the runtime writes expireAt)."
  type        = number
  default     = 30

  validation {
    condition     = var.run_retention_days >= 1 && var.run_retention_days <= 3650 && floor(var.run_retention_days) == var.run_retention_days
    error_message = "run_retention_days must be a whole number between 1 and 3650."
  }
}

variable "reconcile_schedule" {
  description = "When the reconciler runs (Cloud Scheduler cron syntax, UTC)."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.reconcile_schedule))) == 5
    error_message = "reconcile_schedule must be a five-field cron expression, for example */5 * * * *."
  }
}

variable "alert_emails" {
  description = "Email addresses notified by the alert policies (failed runs, stalled runs, dead letters). Empty: incidents are opened in Cloud Monitoring without notification."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email))])
    error_message = "Each entry of alert_emails must be an email address."
  }
}

variable "alert_failed_runs_threshold" {
  description = "Failed runs of one workflow in 5 minutes above which the failed-runs alert opens (0: any failed run)."
  type        = number
  default     = 0

  validation {
    condition     = var.alert_failed_runs_threshold >= 0
    error_message = "alert_failed_runs_threshold must be at least 0."
  }
}

variable "api_key_version" {
  description = "Generation of the API key. Increase it to rotate the key: a new random key is written to a new secret version and the API function is redeployed with it."
  type        = number
  default     = 1

  validation {
    condition     = var.api_key_version >= 1 && floor(var.api_key_version) == var.api_key_version
    error_message = "api_key_version must be a whole number, at least 1."
  }
}

variable "api_propagation_wait" {
  description = "Wait after enabling the APIs before using them (a newly enabled API can refuse calls for a few minutes)."
  type        = string
  default     = "60s"

  validation {
    condition     = can(regex("^[0-9]+(s|m)$", var.api_propagation_wait))
    error_message = "api_propagation_wait must be a duration such as 60s or 2m."
  }
}

variable "iam_propagation_wait" {
  description = "Wait after the service accounts' grants before deploying the functions (IAM changes take about 2 minutes to apply, sometimes 7 or more)."
  type        = string
  default     = "120s"

  validation {
    condition     = can(regex("^[0-9]+(s|m)$", var.iam_propagation_wait))
    error_message = "iam_propagation_wait must be a duration such as 120s or 5m."
  }
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
