output "function_name" {
  description = "The function's name."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "The function's ARN (targets of EventBridge rules)."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "The function's execution role."
  value       = aws_iam_role.this.arn
}

output "log_group_name" {
  description = "Where the function's JSON log lines go."
  value       = aws_cloudwatch_log_group.this.name
}
