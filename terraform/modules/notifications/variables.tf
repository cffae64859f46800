variable "environment" {
  description = "Deployment name (dev, prod); the topic names end with it."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key the topics are encrypted with."
  type        = string
}

variable "notification_subscribers" {
  description = "E-mail addresses for gold.refreshed messages, each with the tenants it may hear about (an empty list: every tenant). Each address must confirm its subscription."
  type = map(object({
    tenants = list(string)
  }))
  default = {}

  validation {
    condition = alltrue([
      for tenants in values(var.notification_subscribers)[*].tenants :
      alltrue([for t in tenants : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", t))])
    ])
    error_message = "Tenant ids match ^[a-z0-9][a-z0-9-]{0,62}$."
  }
}

variable "alert_subscribers" {
  description = "E-mail addresses for alerts: quarantined, failed and ignored files, Glue job failures, messages in the dead-letter queue."
  type        = list(string)
  default     = []
}
