output "gold_rule_arns" {
  description = "The rules that start the gold function, by trigger."
  value       = { for key, rule in aws_cloudwatch_event_rule.gold : key => rule.arn }
}

output "glue_failed_rule_arn" {
  description = "The rule that turns Glue job failures into alerts."
  value       = aws_cloudwatch_event_rule.glue_failed.arn
}
