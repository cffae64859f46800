# Raw-bucket events: S3 ObjectCreated -> queue -> ingest function (partial batch failures). A message
# that fails max_receive_count times moves to the dead-letter queue, and an alarm on the DLQ tells the
# alerts topic. A message is a pointer to a raw file; nothing in it is PHI beyond the object key,
# which is why both queues are encrypted with the customer key.

data "aws_caller_identity" "current" {}

resource "aws_sqs_queue" "dead_letter" {
  name                              = "metriccare_bronze_raw_events_dlq_${var.environment}"
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  message_retention_seconds         = 1209600
}

resource "aws_sqs_queue" "raw_events" {
  name                              = "metriccare_bronze_raw_events_${var.environment}"
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  visibility_timeout_seconds        = 6 * var.consumer_timeout_seconds
  message_retention_seconds         = 1209600
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.raw_events.arn]
  })
}

data "aws_iam_policy_document" "raw_events" {
  statement {
    sid       = "RawBucketSendsItsEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.raw_events.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [var.raw_bucket_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "raw_events" {
  queue_url = aws_sqs_queue.raw_events.id
  policy    = data.aws_iam_policy_document.raw_events.json
}

resource "aws_s3_bucket_notification" "raw" {
  bucket = var.raw_bucket_name

  queue {
    queue_arn = aws_sqs_queue.raw_events.arn
    events    = ["s3:ObjectCreated:*"]
  }

  depends_on = [aws_sqs_queue_policy.raw_events]
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "metriccare_bronze_raw_events_dlq_${var.environment}"
  alarm_description   = "Raw-file events failed ${var.max_receive_count} times and wait in the dead-letter queue; the ledger (status FAILED or PROCESSING) says which file and why."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letter.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alerts_topic_arn]
  ok_actions          = [var.alerts_topic_arn]
}
