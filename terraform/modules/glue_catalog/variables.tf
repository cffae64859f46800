variable "environment" {
  description = "Deployment name (dev, prod); the database names end with it."
  type        = string
}

variable "lake_bucket_name" {
  description = "The lake bucket holding silver/<table>/ and gold/<table>/."
  type        = string
}
