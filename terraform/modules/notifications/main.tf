# Two topics. notifications carries gold.refreshed (one message per changed tenant) to analysts;
# alerts carries what needs an operator. Every message has the attributes `event` and `tenant_id`,
# so a subscriber can be limited to its own tenants with a filter policy.

data "aws_caller_identity" "current" {}

locals {
  topics = {
    notifications = "metriccare_gold_notifications_${var.environment}"
    alerts        = "metriccare_ops_alerts_${var.environment}"
  }
}

resource "aws_sns_topic" "this" {
  for_each = local.topics

  name              = each.value
  kms_master_key_id = var.kms_key_arn
}

# EventBridge (Glue job failures) and CloudWatch alarms (dead-letter queue) publish to alerts.
data "aws_iam_policy_document" "alerts" {
  statement {
    sid       = "AccountOwnsTheTopic"
    actions   = ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes", "sns:SetTopicAttributes"]
    resources = [aws_sns_topic.this["alerts"].arn]
    principals {
      type        = "AWS"
      identifiers = [data.aws_caller_identity.current.account_id]
    }
  }

  statement {
    sid       = "EventBridgeAndAlarmsOfThisAccountPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.this["alerts"].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.this["alerts"].arn
  policy = data.aws_iam_policy_document.alerts.json
}

resource "aws_sns_topic_subscription" "notifications" {
  for_each = var.notification_subscribers

  topic_arn = aws_sns_topic.this["notifications"].arn
  protocol  = "email"
  endpoint  = each.key
  filter_policy = length(each.value.tenants) == 0 ? null : jsonencode({
    tenant_id = each.value.tenants
  })
}

resource "aws_sns_topic_subscription" "alerts" {
  for_each = toset(var.alert_subscribers)

  topic_arn = aws_sns_topic.this["alerts"].arn
  protocol  = "email"
  endpoint  = each.value
}
