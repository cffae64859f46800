variable "environment" {
  description = "Deployment name (dev, prod); the rule names end with it."
  type        = string
}

variable "gold_function_arn" {
  description = "The gold function, target of the schedule and of silver.committed."
  type        = string
}

variable "gold_function_name" {
  description = "The gold function's name (for the invoke permissions)."
  type        = string
}

variable "gold_schedule" {
  description = "EventBridge schedule expression for the gold refresh that catches anything an event missed."
  type        = string
  default     = "rate(1 hour)"
}

variable "event_bus_name" {
  description = "Bus the ingest function sends silver.committed to (METRICCARE_EVENT_BUS)."
  type        = string
  default     = "default"
}

variable "glue_job_names" {
  description = "Glue jobs whose failures are alerts."
  type        = list(string)
}

variable "alerts_topic_arn" {
  description = "Topic for Glue job failures."
  type        = string
}
