# What Power BI reads: an Athena workgroup whose settings every query must use (results encrypted
# with the customer key, a scan limit) and one view per gold table. The views only choose columns:
# they drop the _hoodie_* and row_key bookkeeping so reports bind to stable names, and compute
# nothing the gold tables do not hold. docs/athena-power-bi.md explains the connection and each view.

locals {
  # Athena stores a view as a Glue table whose original text is the Presto view definition.
  presto_types = {
    string    = "varchar"
    bigint    = "bigint"
    int       = "integer"
    double    = "double"
    boolean   = "boolean"
    timestamp = "timestamp"
    date      = "date"
  }

  # One view per gold table, written out so a reviewer reads exactly what Power BI gets.
  # tests/python/test_terraform.py runs each SELECT over real gold tables and compares its columns
  # with the declared ones.
  view_sql = {
    hospital_monthly = <<-SQL
      SELECT tenant_id, hospital_id, hospital_name, "month", stays, deaths_30d, mortality_episodes,
             mortality_rate, index_stays, readmissions_30d, readmission_rate, patient_days, alos,
             hai_count, hai_stays, hai_per_1000_patient_days, open_window_index,
             open_window_mortality, measure_version, refreshed_at
      FROM "${var.gold_database}"."hospital_monthly"
    SQL
    hai_by_code      = <<-SQL
      SELECT tenant_id, "month", "system", code, display, "count", measure_version, refreshed_at
      FROM "${var.gold_database}"."hai_by_code"
    SQL
    mortality_yearly = <<-SQL
      SELECT tenant_id, "year", episodes, deaths, rate, measure_version, refreshed_at
      FROM "${var.gold_database}"."mortality_yearly"
    SQL
    stay_detail      = <<-SQL
      SELECT tenant_id, stay_key, episode_key, patient_key, hospital_id, "month",
             admission_date, discharge_date, los, died_30d, mortality_window_open, index_episode,
             exclusion_reason, readmitted, readmission_stay_key, readmission_window_open, hai_count,
             measure_version, refreshed_at
      FROM "${var.gold_database}"."stay_detail"
    SQL
  }

  # The view's columns as the catalog declares them: tenant_id, then the table's data columns
  # without the row_key bookkeeping.
  views = {
    for table, columns in var.gold_columns : table => {
      name = "v_${table}"
      columns = concat([["tenant_id", "string"]], [
        for column in columns : column if column[0] != "row_key"
      ])
    }
  }
}

resource "aws_athena_workgroup" "analytics" {
  name          = "metriccare_gold_analytics_${var.environment}"
  description   = "MetricCare analysts and Power BI: gold views, encrypted results."
  force_destroy = false

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${var.results_bucket_name}/athena/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = var.kms_key_arn
      }
    }
  }
}

resource "aws_glue_catalog_table" "view" {
  for_each = local.views

  name          = each.value.name
  database_name = var.gold_database
  table_type    = "VIRTUAL_VIEW"
  parameters = {
    presto_view = "true"
    comment     = "Presto View"
  }

  view_original_text = "/* Presto View: ${base64encode(jsonencode({
    originalSql = trimspace(local.view_sql[each.key])
    catalog     = "awsdatacatalog"
    schema      = var.gold_database
    columns     = [for column in each.value.columns : { name = column[0], type = local.presto_types[column[1]] }]
  }))} */"
  view_expanded_text = "/* Presto View */"

  storage_descriptor {
    dynamic "columns" {
      for_each = each.value.columns
      content {
        name = columns.value[0]
        type = columns.value[1]
      }
    }
  }
}

# The same views as statements an administrator can run in the workgroup (to recreate a view by
# hand, or to see its definition), next to the queries the report pages are built on.
resource "aws_athena_named_query" "view" {
  for_each = local.views

  name        = "create ${each.value.name}"
  workgroup   = aws_athena_workgroup.analytics.id
  database    = var.gold_database
  description = "Creates the view ${each.value.name} over gold.${each.key}."
  query       = "CREATE OR REPLACE VIEW \"${var.gold_database}\".\"${each.value.name}\" AS ${trimspace(local.view_sql[each.key])}"
}

# What a Power BI gateway's or an analyst's identity needs to read gold through this workgroup, and
# nothing of silver or raw. Attach it to the role or user the ODBC connection signs in as.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  glue_arn   = "arn:${data.aws_partition.current.partition}:glue:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}"
  athena_arn = "arn:${data.aws_partition.current.partition}:athena:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}"
  s3_arn     = "arn:${data.aws_partition.current.partition}:s3:::"
}

data "aws_iam_policy_document" "gold_reader" {
  # The Athena ODBC/JDBC drivers (Power BI's connector) need what AWS's managed policy
  # AWSQuicksightAthenaAccess lists (docs.aws.amazon.com/athena/latest/ug/policy-actions.html),
  # narrowed here to this workgroup, the account's data catalog, the gold database and the results
  # prefix: results are streamed with GetQueryResultsStream, the catalog is browsed through Athena's
  # metadata calls, and partitions are read in batches.
  statement {
    sid = "QueryInTheWorkgroup"
    actions = [
      "athena:StartQueryExecution", "athena:GetQueryExecution", "athena:BatchGetQueryExecution",
      "athena:ListQueryExecutions", "athena:GetQueryResults", "athena:GetQueryResultsStream",
      "athena:StopQueryExecution", "athena:GetWorkGroup", "athena:ListNamedQueries", "athena:GetNamedQuery",
    ]
    resources = [aws_athena_workgroup.analytics.arn]
  }

  statement {
    sid       = "BrowseTheCatalogThroughAthena"
    actions   = ["athena:GetDataCatalog", "athena:ListDatabases", "athena:GetDatabase", "athena:ListTableMetadata", "athena:GetTableMetadata"]
    resources = ["${local.athena_arn}:datacatalog/AwsDataCatalog"]
  }

  statement {
    # These two list calls take no resource: the driver lists workgroups and catalogs on connecting.
    sid       = "ListWorkgroupsAndCatalogs"
    actions   = ["athena:ListWorkGroups", "athena:ListDataCatalogs"]
    resources = ["*"]
  }

  statement {
    sid     = "SeeTheGoldCatalog"
    actions = ["glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition"]
    resources = [
      "${local.glue_arn}:catalog",
      "${local.glue_arn}:database/${var.gold_database}",
      "${local.glue_arn}:table/${var.gold_database}/*",
    ]
  }

  statement {
    sid       = "ReadGoldFiles"
    actions   = ["s3:GetObject"]
    resources = ["${local.s3_arn}${var.lake_bucket_name}/gold/*"]
  }

  statement {
    sid       = "ListGoldFiles"
    actions   = ["s3:ListBucket"]
    resources = ["${local.s3_arn}${var.lake_bucket_name}"]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["gold/*"]
    }
  }

  statement {
    sid       = "LocateTheLakeBucket"
    actions   = ["s3:GetBucketLocation"]
    resources = ["${local.s3_arn}${var.lake_bucket_name}"]
  }

  statement {
    sid       = "WriteQueryResults"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${local.s3_arn}${var.results_bucket_name}/athena/*"]
  }

  statement {
    sid       = "ListQueryResults"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
    resources = ["${local.s3_arn}${var.results_bucket_name}"]
  }

  statement {
    sid       = "UseTheDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_policy" "gold_reader" {
  name        = "metriccare_gold_reader_${var.environment}"
  description = "Read the MetricCare gold views through Athena (Power BI)."
  policy      = data.aws_iam_policy_document.gold_reader.json
}
