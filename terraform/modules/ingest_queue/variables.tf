variable "environment" {
  description = "Deployment name (dev, prod); the queue names end with it."
  type        = string
}

variable "raw_bucket_name" {
  description = "The raw bucket whose ObjectCreated events feed the queue."
  type        = string
}

variable "raw_bucket_arn" {
  description = "ARN of the raw bucket (the only sender the queue accepts)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the queues."
  type        = string
}

variable "consumer_timeout_seconds" {
  description = "Timeout of the function that reads the queue; the visibility timeout is six times it, as AWS advises for Lambda event sources."
  type        = number
}

variable "max_receive_count" {
  description = "Deliveries of one message before it moves to the dead-letter queue."
  type        = number
  default     = 5
}

variable "alerts_topic_arn" {
  description = "Topic the dead-letter-queue alarm notifies."
  type        = string
}
