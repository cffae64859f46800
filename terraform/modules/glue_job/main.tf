# The scale-out path: PySpark jobs (Glue 5.0, Hudi 0.15) for files too big for the ingest function
# (it starts ingest_large_file with StartJobRun and hands the ledger item off) and for backfills
# (a workflow started by an operator). Both write the same silver tables with the same pseudonyms
# and recompute gold with the same definitions; glue-scripts/README.md explains the jobs.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.region
  partition  = data.aws_partition.current.partition
  s3_arn     = "arn:${local.partition}:s3:::"

  jobs = {
    large_file = {
      name        = "metriccare_silver_large_file_${var.environment}"
      script      = "ingest_large_file.py"
      description = "One raw file too large for the ingest function: silver, then gold for its tenant; finishes the HANDED_OFF ledger item."
    }
    backfill = {
      name        = "metriccare_silver_backfill_${var.environment}"
      script      = "backfill.py"
      description = "Every raw file under one tenant's prefix: silver, then gold for the tenant."
    }
  }

  package_key = "glue-scripts/metriccare_glue.zip"

  # Arguments every job run gets; the ingest function adds --tenant_id and --ledger_id to each
  # large-file run (the job reads the object's key from the ledger item: a key may name a
  # patient). A backfill reads tenant_id and prefix from its workflow run's properties.
  common_arguments = {
    "--job-language"                     = "python"
    "--datalake-formats"                 = "hudi"
    "--conf"                             = "spark.serializer=org.apache.spark.serializer.KryoSerializer --conf spark.sql.hive.convertMetastoreParquet=false"
    "--extra-py-files"                   = "s3://${var.artifacts_bucket_name}/${local.package_key}"
    "--enable-continuous-cloudwatch-log" = "true"
    "--enable-metrics"                   = "true"
    "--enable-observability-metrics"     = "true"
    "--raw_bucket"                       = var.raw_bucket_name
    "--lake_bucket"                      = var.lake_bucket_name
    "--ledger_table"                     = var.ledger_table_name
    "--lock_table"                       = aws_dynamodb_table.hudi_locks.name
    "--pseudonym_key_parameter"          = var.pseudonym_key_parameter_name
    "--silver_database"                  = var.silver_database
    "--gold_database"                    = var.gold_database
    "--aws_region"                       = local.region
  }
}

# Hudi's DynamoDBBasedLockProvider (optimistic concurrency between job runs): partition key "key".
resource "aws_dynamodb_table" "hudi_locks" {
  name         = "metriccare_silver_hudi_locks_${var.environment}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "key"

  attribute {
    name = "key"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }
}

# The zip holds the metriccare_glue/ folder itself (Glue puts the zip on the Python path, so
# `import metriccare_glue` needs the folder at its root), nothing else of glue-scripts/.
data "archive_file" "package" {
  type        = "zip"
  source_dir  = var.scripts_dir
  output_path = "${path.root}/.terraform/metriccare_glue.zip"
  excludes    = ["jobs", "tests", "README.md", "requirements-test.txt", "pytest.ini", "metriccare_glue/__pycache__"]
}

resource "aws_s3_object" "package" {
  bucket      = var.artifacts_bucket_name
  key         = local.package_key
  source      = data.archive_file.package.output_path
  source_hash = data.archive_file.package.output_base64sha256
  kms_key_id  = var.kms_key_arn
}

resource "aws_s3_object" "script" {
  for_each = local.jobs

  bucket      = var.artifacts_bucket_name
  key         = "glue-scripts/jobs/${each.value.script}"
  source      = "${var.scripts_dir}/jobs/${each.value.script}"
  source_hash = filebase64sha256("${var.scripts_dir}/jobs/${each.value.script}")
  kms_key_id  = var.kms_key_arn
}

resource "aws_glue_security_configuration" "jobs" {
  name = "metriccare_silver_jobs_${var.environment}"

  encryption_configuration {
    s3_encryption {
      s3_encryption_mode = "SSE-KMS"
      kms_key_arn        = var.kms_key_arn
    }
    cloudwatch_encryption {
      cloudwatch_encryption_mode = "SSE-KMS"
      kms_key_arn                = var.kms_key_arn
    }
    job_bookmarks_encryption {
      job_bookmarks_encryption_mode = "CSE-KMS"
      kms_key_arn                   = var.kms_key_arn
    }
  }
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "jobs" {
  name               = "metriccare_silver_glue_jobs_${var.environment}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "jobs" {
  statement {
    sid       = "ReadScripts"
    actions   = ["s3:GetObject"]
    resources = ["${local.s3_arn}${var.artifacts_bucket_name}/glue-scripts/*"]
  }

  statement {
    sid       = "ReadRawFiles"
    actions   = ["s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectTagging"]
    resources = ["${local.s3_arn}${var.raw_bucket_name}/*"]
  }

  statement {
    sid       = "ListRawAndLake"
    actions   = ["s3:ListBucket"]
    resources = ["${local.s3_arn}${var.raw_bucket_name}", "${local.s3_arn}${var.lake_bucket_name}"]
  }

  statement {
    sid       = "WriteLakeTables"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.s3_arn}${var.lake_bucket_name}/*"]
  }

  statement {
    sid       = "FinishHandedOffLedgerItems"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [var.ledger_table_arn]
  }

  statement {
    sid       = "HudiLocks"
    actions   = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.hudi_locks.arn]
  }

  statement {
    sid       = "PseudonymKey"
    actions   = ["ssm:GetParameter"]
    resources = [var.pseudonym_key_parameter_arn]
  }

  statement {
    sid     = "RegisterTenantPartitions"
    actions = ["glue:GetTable", "glue:BatchCreatePartition"]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog",
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${var.silver_database}",
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${var.gold_database}",
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${var.silver_database}/*",
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${var.gold_database}/*",
    ]
  }

  statement {
    sid       = "SeeWhetherAHandedOffRunEnded"
    actions   = ["glue:GetJobRun"]
    resources = ["arn:${local.partition}:glue:${local.region}:${local.account_id}:job/${local.jobs.large_file.name}"]
  }

  statement {
    sid       = "ReadBackfillRunProperties"
    actions   = ["glue:GetWorkflowRunProperties"]
    resources = ["arn:${local.partition}:glue:${local.region}:${local.account_id}:workflow/${aws_glue_workflow.backfill.name}"]
  }

  statement {
    sid       = "UseTheDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "JobLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws-glue/*"]
  }

  statement {
    sid       = "JobMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource-level permissions; the namespace is fixed below.
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Glue"]
    }
  }
}

resource "aws_iam_role_policy" "jobs" {
  name   = "metriccare_silver_glue_jobs_${var.environment}"
  role   = aws_iam_role.jobs.id
  policy = data.aws_iam_policy_document.jobs.json
}

resource "aws_glue_job" "this" {
  for_each = local.jobs

  name                   = each.value.name
  description            = each.value.description
  role_arn               = aws_iam_role.jobs.arn
  glue_version           = "5.0"
  worker_type            = var.worker_type
  number_of_workers      = var.number_of_workers
  timeout                = var.timeout_minutes
  security_configuration = aws_glue_security_configuration.jobs.name

  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = "s3://${var.artifacts_bucket_name}/${aws_s3_object.script[each.key].key}"
  }

  default_arguments = local.common_arguments

  execution_property {
    max_concurrent_runs = var.max_concurrent_runs
  }
}

# Backfills run as a workflow so an operator starts one with run properties (tenant_id, prefix)
# and sees its progress in one place.
resource "aws_glue_workflow" "backfill" {
  name                = "metriccare_silver_backfill_${var.environment}"
  description         = "Backfill one tenant: start with run properties tenant_id and prefix (a raw-bucket prefix under the tenant's folder)."
  max_concurrent_runs = 1
}

resource "aws_glue_trigger" "backfill" {
  name          = "metriccare_silver_backfill_start_${var.environment}"
  type          = "ON_DEMAND"
  workflow_name = aws_glue_workflow.backfill.name

  actions {
    job_name = aws_glue_job.this["backfill"].name
  }
}
