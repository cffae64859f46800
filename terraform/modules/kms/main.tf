# One customer-managed key for the deployment's data at rest: buckets, ledger, topics, queues, logs,
# Lambda environment variables, Glue output and Athena results. Roles get kms:Decrypt/GenerateDataKey
# on it through their own policies; the key policy below only admits the account and the AWS services
# that encrypt on a role's behalf without one (S3 notifications into the queue, EventBridge and
# CloudWatch alarms into the topics, CloudWatch Logs for the log groups).
#
# The service statement has no condition, as AWS documents it: the SQS guide's "Configure KMS
# permissions for AWS services" (docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
# sqs-key-management.html) and the SNS guide's "Enable compatibility between event sources from AWS
# services and encrypted topics" grant the service principal kms:GenerateDataKey* and kms:Decrypt
# with none. Whether these services put aws:SourceAccount in the request context of their KMS calls
# is not documented, so a condition on it could silently stop every notification. Which account's
# events may reach a queue or topic is decided by the queue and topic policies instead (modules
# ingest_queue and notifications: aws:SourceArn / aws:SourceAccount, which those services document).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.region
  partition  = data.aws_partition.current.partition
}

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_111:This is a key policy: its Resource "*" is this one key, not every resource.
  # checkov:skip=CKV_AWS_356:This is a key policy: its Resource "*" is this one key, not every resource.
  # checkov:skip=CKV_AWS_109:This is a key policy: the account administers its own key (the AWS default key policy).
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "ServicesEncryptForThisAccount"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type = "Service"
      identifiers = [
        "s3.amazonaws.com",
        "events.amazonaws.com",
        "cloudwatch.amazonaws.com",
        "sns.amazonaws.com",
      ]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptThisAccountsLogGroups"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "MetricCare data at rest (${var.name})"
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_days
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
