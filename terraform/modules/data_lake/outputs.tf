output "bucket_names" {
  description = "Bucket name by role: raw, lake, quarantine, athena_results, artifacts."
  value       = { for key, bucket in aws_s3_bucket.data : key => bucket.id }
}

output "bucket_arns" {
  description = "Bucket ARN by role: raw, lake, quarantine, athena_results, artifacts."
  value       = { for key, bucket in aws_s3_bucket.data : key => bucket.arn }
}

output "access_logs_bucket_name" {
  description = "The S3 server access log bucket."
  value       = aws_s3_bucket.access_logs.id
}
