output "notifications_topic_arn" {
  description = "Topic for gold.refreshed (METRICCARE_NOTIFICATIONS_TOPIC_ARN)."
  value       = aws_sns_topic.this["notifications"].arn
}

output "alerts_topic_arn" {
  description = "Topic for alerts (METRICCARE_ALERTS_TOPIC_ARN)."
  value       = aws_sns_topic.this["alerts"].arn
}
