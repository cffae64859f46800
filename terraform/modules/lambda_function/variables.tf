variable "name" {
  description = "Function name, metriccare_<layer>_<component>_<env>."
  type        = string
}

variable "description" {
  description = "What the function does (shown in the console)."
  type        = string
}

variable "binary" {
  description = "The cargo binary packaged in the zip (cargo lambda build names target/lambda/<binary>/bootstrap.zip)."
  type        = string
}

variable "zip_path" {
  description = "Path of the bootstrap.zip built by `cargo lambda build --release --output-format zip`."
  type        = string
}

variable "architecture" {
  description = "CPU architecture the zip was built for: x86_64 or arm64."
  type        = string

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture is x86_64 or arm64."
  }
}

variable "memory_mb" {
  description = "Memory (and, in proportion, CPU) of one instance."
  type        = number
}

variable "timeout_seconds" {
  description = "Longest one invocation may run."
  type        = number
}

variable "ephemeral_storage_mb" {
  description = "Size of /tmp, where the ingest stages rows of large files."
  type        = number
  default     = 512
}

variable "max_concurrency" {
  description = "The SQS event source's maximum concurrency (a ceiling on the load on the lake and the ledger), and the reservation when reserve_concurrency is true. A function without sqs_trigger is capped by it only when reserved."
  type        = number

  validation {
    # An SQS event source's maximum concurrency is at least 2.
    condition     = var.max_concurrency >= 2
    error_message = "max_concurrency is at least 2."
  }
}

variable "reserve_concurrency" {
  description = "Reserve max_concurrency for this function out of the account's Lambda concurrency quota. AWS keeps 100 of the quota unreserved, so the quota must be at least the reservations plus 100 (new accounts may start at 10): leave it false there."
  type        = bool
  default     = false
}

variable "environment" {
  description = "Environment variables: the function's configuration (see docs/aws.md)."
  type        = map(string)
}

variable "policy_json" {
  description = "IAM policy with exactly the AWS calls the function's code makes; the module adds what the platform needs (logs, X-Ray, the key, the event source, the dead-letter target)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed key for the environment variables and the log group."
  type        = string
}

variable "log_retention_days" {
  description = "Days the function's logs are kept."
  type        = number
  default     = 365
}

variable "dead_letter_topic_arn" {
  description = "SNS topic that receives asynchronous invocations that failed every retry."
  type        = string
}

variable "sqs_trigger" {
  description = "Queue the function reads in batches with partial batch failures; null for functions invoked by events."
  type = object({
    queue_arn                   = string
    batch_size                  = number
    maximum_batching_window_sec = number
  })
  default = null
}
