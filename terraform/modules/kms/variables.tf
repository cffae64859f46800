variable "name" {
  description = "Key alias without the alias/ prefix, e.g. metriccare_ops_key_dev."
  type        = string
}

variable "deletion_window_days" {
  description = "Days a scheduled key deletion can still be cancelled (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_days >= 7 && var.deletion_window_days <= 30
    error_message = "deletion_window_days must be between 7 and 30."
  }
}
