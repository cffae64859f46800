output "table_name" {
  description = "The ledger table's name (METRICCARE_LEDGER_TABLE)."
  value       = aws_dynamodb_table.ledger.name
}

output "table_arn" {
  description = "The ledger table's ARN, for IAM policies."
  value       = aws_dynamodb_table.ledger.arn
}
