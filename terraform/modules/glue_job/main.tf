# The scale-out path: PySpark jobs (Glue 5.0) for files too big for the ingest function (it starts
# ingest_large_file with StartJobRun and hands the ledger item off) and for backfills (a workflow
# started by an operator). Both run the Rust core, loaded as the Python module `metriccare` from the
# wheel uploaded here: Spark spreads the parsing over executors, the Rust writer commits.
# glue-scripts/README.md explains the jobs.

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
  wheel_key   = "glue-scripts/wheels/${basename(var.wheel_path)}"

  # Arguments every job run gets; the ingest function adds --tenant_id and --ledger_id to each
  # large-file run (the job reads the object's key from the ledger item: a key may name a
  # patient). A backfill reads tenant_id and prefix from its workflow run's properties. The
  # --METRICCARE_* arguments are the ingest and gold functions' variables: the jobs export them and
  # the `metriccare` module reads them as the functions do (it reads the ingest function's whole
  # configuration, METRICCARE_GLUE_JOB_NAME included, though a job starts no job). The lease is
  # longer than a run can last, so a live run's claim is never taken over.
  common_arguments = {
    "--job-language"                       = "python"
    "--additional-python-modules"          = "s3://${var.artifacts_bucket_name}/${local.wheel_key}"
    "--extra-py-files"                     = "s3://${var.artifacts_bucket_name}/${local.package_key}"
    "--enable-continuous-cloudwatch-log"   = "true"
    "--enable-metrics"                     = "true"
    "--enable-observability-metrics"       = "true"
    "--METRICCARE_RAW_BUCKET"              = var.raw_bucket_name
    "--METRICCARE_LAKE_BUCKET"             = var.lake_bucket_name
    "--METRICCARE_QUARANTINE_BUCKET"       = var.quarantine_bucket_name
    "--METRICCARE_LEDGER_TABLE"            = var.ledger_table_name
    "--METRICCARE_ALERTS_TOPIC_ARN"        = var.alerts_topic_arn
    "--METRICCARE_NOTIFICATIONS_TOPIC_ARN" = var.notifications_topic_arn
    "--METRICCARE_PSEUDONYM_KEY_PARAMETER" = var.pseudonym_key_parameter_name
    "--METRICCARE_SILVER_DATABASE"         = var.silver_database
    "--METRICCARE_GOLD_DATABASE"           = var.gold_database
    "--METRICCARE_GLUE_JOB_NAME"           = local.jobs.large_file.name
    "--METRICCARE_LEASE_SECONDS"           = tostring(var.timeout_minutes * 60 + 60)
    "--METRICCARE_LOG"                     = "info"
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

# The Rust core as a Python module (functions/python, built by scripts/build-glue-wheel.sh): a
# manylinux x86_64 wheel for Glue 5.0's Python 3.11 and glibc 2.34, installed by
# --additional-python-modules.
resource "aws_s3_object" "wheel" {
  bucket      = var.artifacts_bucket_name
  key         = local.wheel_key
  source      = var.wheel_path
  source_hash = filebase64sha256(var.wheel_path)
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
    sid       = "ReadScriptsAndTheWheel"
    actions   = ["s3:GetObject"]
    resources = ["${local.s3_arn}${var.artifacts_bucket_name}/glue-scripts/*"]
  }

  statement {
    sid       = "ReadRawFiles"
    actions   = ["s3:GetObject"]
    resources = ["${local.s3_arn}${var.raw_bucket_name}/*"]
  }

  statement {
    sid     = "ListRawLakeAndQuarantine"
    actions = ["s3:ListBucket"]
    resources = [
      "${local.s3_arn}${var.raw_bucket_name}",
      "${local.s3_arn}${var.lake_bucket_name}",
      "${local.s3_arn}${var.quarantine_bucket_name}",
    ]
  }

  statement {
    sid       = "WriteLakeTables"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.s3_arn}${var.lake_bucket_name}/*"]
  }

  # Staged parts (staging/), rejects and quarantined files: the executors write, the driver reads
  # and removes.
  statement {
    sid       = "StageAndQuarantine"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.s3_arn}${var.quarantine_bucket_name}/*"]
  }

  statement {
    sid       = "ClaimAndFinishLedgerItems"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [var.ledger_table_arn]
  }

  statement {
    sid       = "PseudonymKey"
    actions   = ["ssm:GetParameter"]
    resources = [var.pseudonym_key_parameter_arn]
  }

  statement {
    sid       = "AlertsAndGoldRefreshes"
    actions   = ["sns:Publish"]
    resources = [var.alerts_topic_arn, var.notifications_topic_arn]
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
