# One MetricCare deployment per Terraform workspace (dev, prod). Names follow
# metriccare_<layer>_<component>_<workspace>; buckets spell them with hyphens (S3 allows no
# underscores) and add the account id.
#
# The two function policies below list exactly the AWS calls each function's code makes (docs/aws.md,
# "AWS calls, by function"); tests/python/test_terraform.py reads this file and the Rust sources
# and fails when they drift apart in either direction.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  environment = terraform.workspace
  account_id  = data.aws_caller_identity.current.account_id
  region      = data.aws_region.current.region
  partition   = data.aws_partition.current.partition
  s3_arn      = "arn:${local.partition}:s3:::"
  glue_arn    = "arn:${local.partition}:glue:${local.region}:${local.account_id}"

  # What scripts/build-glue-wheel.sh builds (the version is the workspace's).
  glue_wheel_name = "metriccare-0.1.0-cp311-abi3-manylinux_2_28_x86_64.whl"

  lambda_timeout_seconds = 900
  event_bus_name         = "default"
}

resource "terraform_data" "workspace_guard" {
  lifecycle {
    precondition {
      condition     = can(regex("^[a-z][a-z0-9]{1,9}$", terraform.workspace)) && terraform.workspace != "default"
      error_message = "Select a named workspace first (terraform workspace select dev | prod): its name is part of every resource name."
    }
  }
}

module "kms" {
  source = "../modules/kms"
  name   = "metriccare_ops_key_${local.environment}"
}

module "data_lake" {
  source        = "../modules/data_lake"
  environment   = local.environment
  kms_key_arn   = module.kms.key_arn
  force_destroy = var.force_destroy_buckets
}

module "ledger" {
  source      = "../modules/ledger"
  name        = "metriccare_ops_ledger_${local.environment}"
  kms_key_arn = module.kms.key_arn
}

module "notifications" {
  source                   = "../modules/notifications"
  environment              = local.environment
  kms_key_arn              = module.kms.key_arn
  notification_subscribers = var.notification_subscribers
  alert_subscribers        = var.alert_subscribers
}

module "ingest_queue" {
  source                   = "../modules/ingest_queue"
  environment              = local.environment
  raw_bucket_name          = module.data_lake.bucket_names.raw
  raw_bucket_arn           = module.data_lake.bucket_arns.raw
  kms_key_arn              = module.kms.key_arn
  consumer_timeout_seconds = local.lambda_timeout_seconds
  alerts_topic_arn         = module.notifications.alerts_topic_arn
}

module "glue_catalog" {
  source           = "../modules/glue_catalog"
  environment      = local.environment
  lake_bucket_name = module.data_lake.bucket_names.lake
}

# The pseudonymisation key: generated once and written only to SSM (a write-only argument, so it is
# never in the Terraform state or plan). Changing it would give every patient new pseudonyms; the
# lake records the key's fingerprint and refuses writes with another key.
ephemeral "random_password" "pseudonym_key" {
  length  = 64
  special = false
}

resource "aws_ssm_parameter" "pseudonym_key" {
  name             = "/metriccare/${local.environment}/pseudonym-key"
  description      = "MetricCare pseudonymisation key (HMAC-SHA256). Never rotate without a re-keying plan."
  type             = "SecureString"
  key_id           = module.kms.key_arn
  value_wo         = ephemeral.random_password.pseudonym_key.result
  value_wo_version = 1
}

module "glue_job" {
  source                       = "../modules/glue_job"
  environment                  = local.environment
  scripts_dir                  = "${path.root}/../../glue-scripts"
  artifacts_bucket_name        = module.data_lake.bucket_names.artifacts
  raw_bucket_name              = module.data_lake.bucket_names.raw
  lake_bucket_name             = module.data_lake.bucket_names.lake
  quarantine_bucket_name       = module.data_lake.bucket_names.quarantine
  wheel_path                   = "${var.glue_wheel_dir}/${local.glue_wheel_name}"
  alerts_topic_arn             = module.notifications.alerts_topic_arn
  notifications_topic_arn      = module.notifications.notifications_topic_arn
  ledger_table_name            = module.ledger.table_name
  ledger_table_arn             = module.ledger.table_arn
  pseudonym_key_parameter_name = aws_ssm_parameter.pseudonym_key.name
  pseudonym_key_parameter_arn  = aws_ssm_parameter.pseudonym_key.arn
  silver_database              = module.glue_catalog.database_names.silver
  gold_database                = module.glue_catalog.database_names.gold
  kms_key_arn                  = module.kms.key_arn
  number_of_workers            = var.glue_workers
}

# ---- the ingest function ----------------------------------------------------------------------

data "aws_iam_policy_document" "ingest" {
  statement {
    sid       = "ReadAndTagRawFiles"
    actions   = ["s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectTagging"]
    resources = ["${module.data_lake.bucket_arns.raw}/*"]
  }

  statement {
    sid       = "WriteSilverTables"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${module.data_lake.bucket_arns.lake}/*"]
  }

  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [module.data_lake.bucket_arns.lake]
  }

  statement {
    sid       = "QuarantineFiles"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${module.data_lake.bucket_arns.quarantine}/*"]
  }

  statement {
    sid       = "Ledger"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [module.ledger.table_arn]
  }

  statement {
    sid       = "Alerts"
    actions   = ["sns:Publish"]
    resources = [module.notifications.alerts_topic_arn]
  }

  statement {
    sid       = "PseudonymKey"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.pseudonym_key.arn]
  }

  statement {
    sid       = "HandLargeFilesToGlue"
    actions   = ["glue:StartJobRun"]
    resources = [module.glue_job.large_file_job_arn]
  }

  statement {
    sid     = "RegisterTenantPartitions"
    actions = ["glue:GetTable", "glue:BatchCreatePartition"]
    resources = [
      "${local.glue_arn}:catalog",
      "${local.glue_arn}:database/${module.glue_catalog.database_names.silver}",
      "${local.glue_arn}:database/${module.glue_catalog.database_names.gold}",
      "${local.glue_arn}:table/${module.glue_catalog.database_names.silver}/*",
      "${local.glue_arn}:table/${module.glue_catalog.database_names.gold}/*",
    ]
  }

  statement {
    sid       = "AnnounceSilverCommits"
    actions   = ["events:PutEvents"]
    resources = ["arn:${local.partition}:events:${local.region}:${local.account_id}:event-bus/${local.event_bus_name}"]
  }
}

module "ingest_function" {
  source                = "../modules/lambda_function"
  name                  = "metriccare_silver_ingest_${local.environment}"
  description           = "Raw FHIR file -> ledger claim -> de-identified silver Hudi tables (or the Glue job for large files)."
  binary                = "metriccare-ingest"
  zip_path              = "${var.lambda_zip_dir}/metriccare-ingest/bootstrap.zip"
  architecture          = var.lambda_architecture
  memory_mb             = var.ingest_memory_mb
  timeout_seconds       = local.lambda_timeout_seconds
  ephemeral_storage_mb  = var.ingest_ephemeral_storage_mb
  max_concurrency       = var.ingest_max_concurrency
  reserve_concurrency   = var.reserve_lambda_concurrency
  kms_key_arn           = module.kms.key_arn
  log_retention_days    = var.log_retention_days
  dead_letter_topic_arn = module.notifications.alerts_topic_arn
  policy_json           = data.aws_iam_policy_document.ingest.json

  # Files of one tenant in a batch are one group commit: a larger batch, gathered over a longer
  # window, rewrites each file group less often (see "Table lifecycle" in the README).
  sqs_trigger = {
    queue_arn                   = module.ingest_queue.queue_arn
    batch_size                  = var.ingest_batch_size
    maximum_batching_window_sec = var.ingest_batching_window_seconds
  }

  environment = {
    METRICCARE_RAW_BUCKET              = module.data_lake.bucket_names.raw
    METRICCARE_LAKE_BUCKET             = module.data_lake.bucket_names.lake
    METRICCARE_QUARANTINE_BUCKET       = module.data_lake.bucket_names.quarantine
    METRICCARE_LEDGER_TABLE            = module.ledger.table_name
    METRICCARE_ALERTS_TOPIC_ARN        = module.notifications.alerts_topic_arn
    METRICCARE_PSEUDONYM_KEY_PARAMETER = aws_ssm_parameter.pseudonym_key.name
    METRICCARE_GLUE_JOB_NAME           = module.glue_job.large_file_job_name
    METRICCARE_MAX_OBJECT_BYTES        = tostring(var.max_object_bytes)
    METRICCARE_SILVER_DATABASE         = module.glue_catalog.database_names.silver
    METRICCARE_GOLD_DATABASE           = module.glue_catalog.database_names.gold
    METRICCARE_EVENT_BUS               = local.event_bus_name
    # Longer than the function can run, so a live claim is never taken over.
    METRICCARE_LEASE_SECONDS = tostring(local.lambda_timeout_seconds + 60)
    METRICCARE_LOG           = "info"
  }
}

# ---- the gold function ------------------------------------------------------------------------

data "aws_iam_policy_document" "gold" {
  statement {
    sid       = "RefreshGoldTables"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${module.data_lake.bucket_arns.lake}/*"]
  }

  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket"]
    resources = [module.data_lake.bucket_arns.lake]
  }

  statement {
    sid       = "AnnounceRefreshes"
    actions   = ["sns:Publish"]
    resources = [module.notifications.notifications_topic_arn]
  }
}

module "gold_function" {
  source                = "../modules/lambda_function"
  name                  = "metriccare_gold_refresh_${local.environment}"
  description           = "Recomputes the gold quality measures of tenants whose silver changed and announces them."
  binary                = "metriccare-gold"
  zip_path              = "${var.lambda_zip_dir}/metriccare-gold/bootstrap.zip"
  architecture          = var.lambda_architecture
  memory_mb             = var.gold_memory_mb
  ephemeral_storage_mb  = var.gold_ephemeral_storage_mb
  timeout_seconds       = local.lambda_timeout_seconds
  max_concurrency       = 2 # reserved only with reserve_lambda_concurrency: a refresh beside another finds the gold lock held and returns
  reserve_concurrency   = var.reserve_lambda_concurrency
  kms_key_arn           = module.kms.key_arn
  log_retention_days    = var.log_retention_days
  dead_letter_topic_arn = module.notifications.alerts_topic_arn
  policy_json           = data.aws_iam_policy_document.gold.json

  environment = {
    METRICCARE_LAKE_BUCKET             = module.data_lake.bucket_names.lake
    METRICCARE_NOTIFICATIONS_TOPIC_ARN = module.notifications.notifications_topic_arn
    METRICCARE_LOG                     = "info"
  }
}

module "events" {
  source             = "../modules/events"
  environment        = local.environment
  gold_function_arn  = module.gold_function.function_arn
  gold_function_name = module.gold_function.function_name
  gold_schedule      = var.gold_schedule
  event_bus_name     = local.event_bus_name
  glue_job_names     = module.glue_job.job_names
  alerts_topic_arn   = module.notifications.alerts_topic_arn
}

module "athena" {
  source              = "../modules/athena"
  environment         = local.environment
  results_bucket_name = module.data_lake.bucket_names.athena_results
  lake_bucket_name    = module.data_lake.bucket_names.lake
  kms_key_arn         = module.kms.key_arn
  gold_database       = module.glue_catalog.database_names.gold
  gold_columns        = module.glue_catalog.gold_columns
}
