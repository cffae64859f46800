variable "environment" {
  description = "Deployment name (the Terraform workspace: dev, prod); part of every bucket name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.environment))
    error_message = "environment must be 2-10 lowercase letters or digits, starting with a letter."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for SSE-KMS on every data bucket."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept before it expires."
  type        = number
  default     = 90
}

variable "raw_archive_after_days" {
  description = "Days after which a raw file the ledger completed or skipped (tag metriccare-status=completed or skipped) moves to Glacier Instant Retrieval."
  type        = number
  default     = 30
}

variable "quarantine_retention_days" {
  description = "Days a quarantined file (raw PHI) is kept for investigation before it expires."
  type        = number
  default     = 90
}

variable "athena_results_retention_days" {
  description = "Days Athena query results are kept."
  type        = number
  default     = 30
}

variable "access_log_retention_days" {
  description = "Days S3 server access logs are kept."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete non-empty buckets. Keep false for anything holding real data."
  type        = bool
  default     = false
}
