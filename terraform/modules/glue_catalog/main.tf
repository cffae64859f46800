# The Glue catalog Athena reads: one database per layer and one table per Hudi table. Athena sees a
# Hudi table only through HoodieParquetInputFormat (a plain Parquet table would show every file
# version), with the five _hoodie_* columns first and timestamps as timestamp. tenant_id is the
# partition key: the writers register each new tenant's partition with BatchCreatePartition
# (Athena cannot MSCK REPAIR a Hudi table), so no partitions are declared here.
#
# Columns follow the Parquet schema the Rust writer produces (docs/silver-schema.md,
# docs/metrics.md); tests/python/test_terraform.py compares them with real files. tenant_id is
# also stored in the files, but Hive forbids a partition key among the columns.

locals {
  hoodie_columns = [
    ["_hoodie_commit_time", "string"],
    ["_hoodie_commit_seqno", "string"],
    ["_hoodie_record_key", "string"],
    ["_hoodie_partition_path", "string"],
    ["_hoodie_file_name", "string"],
  ]

  lineage_columns = [
    ["last_updated", "timestamp"],
    ["version_id", "string"],
    ["source_file_id", "string"],
    ["ingested_at", "timestamp"],
  ]

  # Columns added to a silver table after the first release come after its lineage columns, in the
  # order they were added (a Hudi table may only gain nullable columns at the end).
  added_columns = {
    encounter = [
      ["class_system", "string"],
      ["part_of_key", "string"],
      ["discharge_disposition_system", "string"],
    ]
    condition = [
      ["code_codings", "string"],
    ]
  }

  tables = {
    silver = {
      patient = [
        ["patient_key", "string"],
        ["gender", "string"],
        ["birth_year", "int"],
        ["deceased", "boolean"],
        ["deceased_at", "timestamp"],
        ["postal_prefix", "string"],
        ["state", "string"],
        ["country", "string"],
        ["marital_status", "string"],
      ]
      encounter = [
        ["encounter_key", "string"],
        ["patient_key", "string"],
        ["status", "string"],
        ["class_code", "string"],
        ["type_code", "string"],
        ["type_display", "string"],
        ["reason_code", "string"],
        ["period_start", "timestamp"],
        ["period_end", "timestamp"],
        ["hospital_key", "string"],
        ["hospital_name", "string"],
        ["discharge_disposition", "string"],
      ]
      condition = [
        ["condition_key", "string"],
        ["patient_key", "string"],
        ["encounter_key", "string"],
        ["code_system", "string"],
        ["code", "string"],
        ["code_display", "string"],
        ["clinical_status", "string"],
        ["verification_status", "string"],
        ["category", "string"],
        ["onset_at", "timestamp"],
        ["abatement_at", "timestamp"],
        ["recorded_at", "timestamp"],
      ]
      organization = [
        ["organization_key", "string"],
        ["identifier_key", "string"],
        ["name", "string"],
        ["type_code", "string"],
        ["active", "boolean"],
        ["city", "string"],
        ["state", "string"],
      ]
    }
    gold = {
      hospital_monthly = [
        ["row_key", "string"],
        ["hospital_id", "string"],
        ["hospital_name", "string"],
        ["month", "string"],
        ["stays", "bigint"],
        ["deaths_30d", "bigint"],
        ["mortality_episodes", "bigint"],
        ["mortality_rate", "double"],
        ["index_stays", "bigint"],
        ["readmissions_30d", "bigint"],
        ["readmission_rate", "double"],
        ["patient_days", "bigint"],
        ["alos", "double"],
        ["hai_count", "bigint"],
        ["hai_stays", "bigint"],
        ["hai_per_1000_patient_days", "double"],
        ["open_window_index", "bigint"],
        ["open_window_mortality", "bigint"],
        ["measure_version", "int"],
        ["refreshed_at", "timestamp"],
      ]
      hai_by_code = [
        ["row_key", "string"],
        ["month", "string"],
        ["system", "string"],
        ["code", "string"],
        ["display", "string"],
        ["count", "bigint"],
        ["measure_version", "int"],
        ["refreshed_at", "timestamp"],
      ]
      mortality_yearly = [
        ["row_key", "string"],
        ["year", "int"],
        ["episodes", "bigint"],
        ["deaths", "bigint"],
        ["rate", "double"],
        ["measure_version", "int"],
        ["refreshed_at", "timestamp"],
      ]
      stay_detail = [
        ["row_key", "string"],
        ["stay_key", "string"],
        ["episode_key", "string"],
        ["patient_key", "string"],
        ["hospital_id", "string"],
        ["month", "string"],
        ["admission_date", "date"],
        ["discharge_date", "date"],
        ["los", "bigint"],
        ["died_30d", "boolean"],
        ["mortality_window_open", "boolean"],
        ["index_episode", "boolean"],
        ["exclusion_reason", "string"],
        ["readmitted", "boolean"],
        ["readmission_stay_key", "string"],
        ["readmission_window_open", "boolean"],
        ["hai_count", "bigint"],
        ["measure_version", "int"],
        ["refreshed_at", "timestamp"],
      ]
    }
  }

  databases = {
    bronze = "Raw FHIR files (PHI) live in the raw bucket and are not catalogued; this database is for a team's own raw-zone tables."
    silver = "De-identified FHIR resources (Apache Hudi copy-on-write, partitioned by tenant_id)."
    gold   = "Crude quality measures in the style of CMS and NHSN per tenant, hospital and month, and one row per stay behind them (Apache Hudi copy-on-write, partitioned by tenant_id)."
  }

  # One entry per (layer, table) for for_each.
  catalog_tables = merge([
    for layer, tables in local.tables : {
      for table, columns in tables : "${layer}.${table}" => {
        layer = layer
        table = table
        # Every silver row carries the lineage columns after its own, then the columns added since.
        columns = concat(
          local.hoodie_columns,
          columns,
          layer == "silver" ? local.lineage_columns : [],
          layer == "silver" ? lookup(local.added_columns, table, []) : [],
        )
      }
    }
  ]...)
}

resource "aws_glue_catalog_database" "layer" {
  for_each = local.databases

  name        = "metriccare_${each.key}_${var.environment}"
  description = each.value
}

resource "aws_glue_catalog_table" "hudi" {
  for_each = local.catalog_tables

  name          = each.value.table
  database_name = aws_glue_catalog_database.layer[each.value.layer].name
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    EXTERNAL       = "TRUE"
    classification = "hudi"
  }

  partition_keys {
    name = "tenant_id"
    type = "string"
  }

  storage_descriptor {
    location      = "s3://${var.lake_bucket_name}/${each.value.layer}/${each.value.table}"
    input_format  = "org.apache.hudi.hadoop.HoodieParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    dynamic "columns" {
      for_each = each.value.columns
      content {
        name = columns.value[0]
        type = columns.value[1]
      }
    }
  }
}
