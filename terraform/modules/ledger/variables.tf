variable "name" {
  description = "Table name, e.g. metriccare_ops_ledger_dev."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for encryption at rest."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse to delete the table (the record of which files were processed)."
  type        = bool
  default     = true
}
