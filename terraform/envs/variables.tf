variable "aws_region" {
  description = "Region the stack is deployed to."
  type        = string
}

variable "glue_wheel_dir" {
  description = "Folder with the `metriccare` wheel from scripts/build-glue-wheel.sh (target/wheels)."
  type        = string
  default     = "../../target/wheels"
}

variable "lambda_zip_dir" {
  description = "Folder with <binary>/bootstrap.zip from `cargo lambda build --release --output-format zip` (target/lambda)."
  type        = string
  default     = "../../target/lambda"
}

variable "lambda_architecture" {
  description = "Architecture the zips were built for: x86_64 or arm64 (arm64 is cheaper per GB-second; build with --arm64)."
  type        = string
  default     = "x86_64"
}

variable "ingest_memory_mb" {
  description = "Memory of the ingest function; rows of a large file spill to /tmp, so memory bounds speed more than size."
  type        = number
  default     = 1024
}

variable "ingest_ephemeral_storage_mb" {
  description = "Size of the ingest function's /tmp (staged rows of one file)."
  type        = number
  default     = 4096
}

variable "ingest_batch_size" {
  description = "S3 notifications per ingest invocation (SQS batch); each tenant's files in a batch are one group commit. Up to 10,000; over 10 needs a batching window of at least 1 s."
  type        = number
  default     = 100

  validation {
    condition     = var.ingest_batch_size >= 1 && var.ingest_batch_size <= 10000
    error_message = "ingest_batch_size must be between 1 and 10000."
  }
}

variable "ingest_batching_window_seconds" {
  description = "How long SQS gathers notifications into one ingest batch (0-300 s): longer windows make bigger group commits and later silver."
  type        = number
  default     = 30

  validation {
    condition     = var.ingest_batching_window_seconds >= 0 && var.ingest_batching_window_seconds <= 300
    error_message = "ingest_batching_window_seconds must be between 0 and 300."
  }
}

variable "ingest_max_concurrency" {
  description = "Most ingest instances at once (the queue's event source never runs more)."
  type        = number
  default     = 10
}

variable "reserve_lambda_concurrency" {
  description = "Reserve the functions' concurrency (ingest_max_concurrency + 2 for gold) out of the account's Lambda quota, so other functions cannot starve them. Needs a quota of at least that sum + 100 (AWS keeps 100 unreserved): check Service Quotas, Lambda, Concurrent executions (L-B99A9384)."
  type        = bool
  default     = false
}

variable "gold_memory_mb" {
  description = "Memory of the gold function (it reads the silver partitions of changed tenants)."
  type        = number
  default     = 2048
}

variable "gold_ephemeral_storage_mb" {
  description = "Size of the gold function's /tmp (a tenant's staged gold rows and new stay_detail file, and the copy of its previous one): about 450 MB per million inpatient stays."
  type        = number
  default     = 1024
}

variable "max_object_bytes" {
  description = "Raw files larger than this go to the Glue job instead of the ingest function."
  type        = number
  default     = 1073741824
}

variable "gold_schedule" {
  description = "Schedule of the gold refresh that catches anything an event missed."
  type        = string
  default     = "rate(1 hour)"
}

variable "notification_subscribers" {
  description = "E-mail address => tenants it hears gold.refreshed about (empty list: all tenants)."
  type = map(object({
    tenants = list(string)
  }))
  default = {}
}

variable "alert_subscribers" {
  description = "E-mail addresses for alerts."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Days function logs are kept."
  type        = number
  default     = 365
}

variable "glue_workers" {
  description = "Workers per Glue job run."
  type        = number
  default     = 4
}

variable "force_destroy_buckets" {
  description = "Let terraform destroy delete non-empty buckets (a dev convenience; never for prod)."
  type        = bool
  default     = false
}
