# Deploys this project (../main.py, ../requirements.txt, ../shop.py, ../order.json) with
# refluxo's Terraform module: three Cloud Functions, Firestore, Cloud Tasks, Pub/Sub, the
# API key in Secret Manager. From this directory:
#   terraform init
#   terraform apply -var project_id=MY_PROJECT -var region=europe-west1
#
# In your own repository, take the module from where you keep refluxo, for example
#   source = "git::https://YOUR-GIT-HOST/YOUR-ORG/refluxo.git//terraform?ref=v0.1.0"

variable "project_id" {
  description = "The Google Cloud project to deploy to."
  type        = string
}

variable "region" {
  description = "The region of the functions, the queue and the bucket."
  type        = string
  default     = "europe-west1"
}

variable "api_invoker_members" {
  description = "Who may call the API through Cloud Run IAM (for example [\"user:you@example.com\"])."
  type        = list(string)
  default     = []
}

module "refluxo" {
  source = "../../../terraform"

  project_id          = var.project_id
  region              = var.region
  api_invoker_members = var.api_invoker_members

  # The project: main.py and requirements.txt from source_dir, plus the App's own files.
  source_dir          = "${path.root}/.."
  app                 = "shop:app"
  app_source_patterns = ["shop.py", "order.json"]
}

output "api_url" {
  description = "The API (and the run inspector at /ui)."
  value       = module.refluxo.api_url
}

output "api_key_secret" {
  description = "The Secret Manager secret holding the API key."
  value       = module.refluxo.api_key_secret
}

output "events_topic" {
  description = "The Pub/Sub topic that starts, resumes and cancels runs."
  value       = module.refluxo.events_topic
}
