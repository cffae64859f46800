output "workgroup_name" {
  description = "The workgroup Power BI's connection must name."
  value       = aws_athena_workgroup.analytics.name
}

output "view_names" {
  description = "The views Power BI reads, by gold table."
  value       = { for table, view in local.views : table => view.name }
}

output "view_sql" {
  description = "Each view's SELECT, by gold table."
  value       = local.view_sql
}

output "gold_reader_policy_arn" {
  description = "Managed policy to attach to the identity Power BI connects as."
  value       = aws_iam_policy.gold_reader.arn
}
