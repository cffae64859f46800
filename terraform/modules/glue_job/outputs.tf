output "large_file_job_name" {
  description = "The job the ingest function starts for large files (METRICCARE_GLUE_JOB_NAME)."
  value       = aws_glue_job.this["large_file"].name
}

output "job_names" {
  description = "Every MetricCare Glue job (their failures are alerts)."
  value       = [for job in aws_glue_job.this : job.name]
}

output "large_file_job_arn" {
  description = "ARN of the large-file job (the ingest function may start it)."
  value       = aws_glue_job.this["large_file"].arn
}

output "backfill_workflow_name" {
  description = "Start a backfill: aws glue start-workflow-run --name <this> --run-properties tenant_id=...,prefix=..."
  value       = aws_glue_workflow.backfill.name
}

output "role_arn" {
  description = "The jobs' role."
  value       = aws_iam_role.jobs.arn
}
