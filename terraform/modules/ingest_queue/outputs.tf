output "queue_arn" {
  description = "The raw-events queue (the ingest function's event source)."
  value       = aws_sqs_queue.raw_events.arn
}

output "dead_letter_queue_arn" {
  description = "Where raw-events messages go after max_receive_count failures."
  value       = aws_sqs_queue.dead_letter.arn
}
