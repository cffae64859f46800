# The data lake's buckets. Every data bucket gets the same baseline — versioning, SSE-KMS with the
# customer key, public access blocked, bucket-owner-enforced ownership, a TLS-only policy, access
# logs, expiry of noncurrent versions — and its own lifecycle on top. S3 bucket names cannot contain
# underscores, so metriccare_<layer>_<component>_<env> is spelled with hyphens and the account id is
# appended to make it globally unique.

data "aws_caller_identity" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id

  buckets = {
    raw = {
      component = "bronze-raw"
      purpose   = "FHIR files as uploaded by each tenant (PHI)"
    }
    lake = {
      component = "lake"
      purpose   = "silver and gold Hudi tables (de-identified) and the pipeline's control files"
    }
    quarantine = {
      component = "bronze-quarantine"
      purpose   = "files and resources the pipeline refused, with reasons (PHI)"
    }
    athena_results = {
      component = "gold-athena-results"
      purpose   = "Athena query results"
    }
    artifacts = {
      component = "ops-artifacts"
      purpose   = "Glue job scripts"
    }
  }

  # Extra expiry of current versions, by bucket: quarantined PHI and query results are not kept.
  current_version_expiry_days = {
    quarantine     = var.quarantine_retention_days
    athena_results = var.athena_results_retention_days
  }

  bucket_names = {
    for key, bucket in local.buckets :
    key => "metriccare-${bucket.component}-${var.environment}-${local.account_id}"
  }
}

resource "aws_s3_bucket" "data" {
  # checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery decision per deployment (a second region must be allowed to hold PHI); versioning and PITR cover operator error.
  # checkov:skip=CKV2_AWS_62:Only the raw bucket's ObjectCreated events drive the pipeline; they are configured with the ingest queue (module ingest_queue).
  for_each = local.buckets

  bucket        = local.bucket_names[each.key]
  force_destroy = var.force_destroy
  tags = {
    Name    = local.bucket_names[each.key]
    Purpose = each.value.purpose
  }
}

resource "aws_s3_bucket_ownership_controls" "data" {
  for_each = local.buckets

  bucket = aws_s3_bucket.data[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  for_each = local.buckets

  bucket                  = aws_s3_bucket.data[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  for_each = local.buckets

  bucket = aws_s3_bucket.data[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  for_each = local.buckets

  bucket = aws_s3_bucket.data[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # S3 Bucket Keys cut KMS requests (and cost) for the many small Hudi control files.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "data" {
  for_each = local.buckets

  bucket        = aws_s3_bucket.data[each.key].id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"

  # Log delivery writes only what the target's bucket policy grants, and the target's id alone does
  # not order this after that policy: on a first apply, logging could start (or PutBucketLogging be
  # checked) against a target that does not yet grant it.
  depends_on = [aws_s3_bucket_policy.access_logs]
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data[each.key].arn, "${aws_s3_bucket.data[each.key].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  for_each = local.buckets

  bucket = aws_s3_bucket.data[each.key].id
  policy = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  # checkov:skip=CKV_AWS_300:The first rule aborts incomplete uploads for the whole bucket; S3 rejects that action in the tag-filtered archive rule this check reads.
  for_each = local.buckets

  bucket = aws_s3_bucket.data[each.key].id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # The ingest function tags each raw file with its outcome; completed files and the skipped files
  # of Bulk export folders (manifests, logs, error files) are archived, others stay where an
  # operator can find them.
  dynamic "rule" {
    for_each = each.key == "raw" ? toset(["completed", "skipped"]) : toset([])
    content {
      id     = "archive-${rule.value}-raw-files"
      status = "Enabled"
      filter {
        tag {
          key   = "metriccare-status"
          value = rule.value
        }
      }
      transition {
        days          = var.raw_archive_after_days
        storage_class = "GLACIER_IR"
      }
    }
  }

  dynamic "rule" {
    for_each = contains(keys(local.current_version_expiry_days), each.key) ? [local.current_version_expiry_days[each.key]] : []
    content {
      id     = "expire-current-versions"
      status = "Enabled"
      filter {}
      expiration {
        days = rule.value
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

# Server access logs. S3 log delivery cannot write to a bucket encrypted with a customer key, so
# this bucket alone uses SSE-S3, and it does not log itself.
resource "aws_s3_bucket" "access_logs" {
  # checkov:skip=CKV_AWS_145:S3 server access log delivery supports only SSE-S3 on the target bucket.
  # checkov:skip=CKV_AWS_18:This is the access-log target; logging it into itself would loop.
  # checkov:skip=CKV_AWS_144:Access logs are not replicated; see the data buckets.
  # checkov:skip=CKV2_AWS_62:Nothing consumes access-log events.
  bucket        = "metriccare-ops-access-logs-${var.environment}-${local.account_id}"
  force_destroy = var.force_destroy
  tags = {
    Purpose = "S3 server access logs of the data buckets"
  }
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.access_log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  depends_on = [aws_s3_bucket_versioning.access_logs]
}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid       = "S3LogDeliveryFromThisAccountsBuckets"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket     = aws_s3_bucket.access_logs.id
  policy     = data.aws_iam_policy_document.access_logs.json
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}
