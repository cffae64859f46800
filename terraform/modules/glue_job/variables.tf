variable "environment" {
  description = "Deployment name (dev, prod); the job names end with it."
  type        = string
}

variable "scripts_dir" {
  description = "The repository's glue-scripts/ folder (jobs/ and the metriccare_glue package)."
  type        = string
}

variable "artifacts_bucket_name" {
  description = "Bucket the job scripts are uploaded to."
  type        = string
}

variable "raw_bucket_name" {
  description = "The raw bucket (read)."
  type        = string
}

variable "lake_bucket_name" {
  description = "The lake bucket (silver and gold tables)."
  type        = string
}

variable "quarantine_bucket_name" {
  description = "The quarantine bucket: the jobs' staged parts (staging/), rejects and quarantined files."
  type        = string
}

variable "wheel_path" {
  description = "The `metriccare` wheel (manylinux x86_64, cp311-abi3) built by scripts/build-glue-wheel.sh."
  type        = string
}

variable "alerts_topic_arn" {
  description = "SNS topic of alerts (a quarantined or failed file)."
  type        = string
}

variable "notifications_topic_arn" {
  description = "SNS topic of gold refreshes (gold.refreshed)."
  type        = string
}

variable "ledger_table_name" {
  description = "The ingest ledger; the job finishes the items the ingest function handed off."
  type        = string
}

variable "ledger_table_arn" {
  description = "ARN of the ledger table."
  type        = string
}

variable "pseudonym_key_parameter_name" {
  description = "SSM SecureString with the pseudonymisation key (the same key as the ingest function)."
  type        = string
}

variable "pseudonym_key_parameter_arn" {
  description = "ARN of that parameter."
  type        = string
}

variable "silver_database" {
  description = "Glue database of the silver tables (partitions of new tenants are registered there)."
  type        = string
}

variable "gold_database" {
  description = "Glue database of the gold tables."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed key for job output, logs and bookmarks."
  type        = string
}

variable "worker_type" {
  description = "Glue worker type (G.1X: 4 vCPU, 16 GB)."
  type        = string
  default     = "G.1X"
}

variable "number_of_workers" {
  description = "Workers per job run."
  type        = number
  default     = 4
}

variable "timeout_minutes" {
  description = "Longest one job run may take."
  type        = number
  default     = 120
}

variable "max_concurrent_runs" {
  description = "Large files processed at once (each run writes one tenant)."
  type        = number
  default     = 4
}
