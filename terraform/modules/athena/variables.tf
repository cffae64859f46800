variable "environment" {
  description = "Deployment name (dev, prod); the workgroup name ends with it."
  type        = string
}

variable "results_bucket_name" {
  description = "Bucket for query results."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed key the results are encrypted with (enforced for every query)."
  type        = string
}

variable "gold_database" {
  description = "Glue database of the gold tables; the views are created in it."
  type        = string
}

variable "gold_columns" {
  description = "Data columns of each gold table as [name, hive type] pairs (output gold_columns of the glue_catalog module)."
  type        = map(list(list(string)))
}

variable "bytes_scanned_cutoff" {
  description = "A query scanning more bytes than this is cancelled (cost guard)."
  type        = number
  default     = 10737418240
}

variable "lake_bucket_name" {
  description = "The lake bucket; analysts read its gold/ prefix only."
  type        = string
}
