output "raw_bucket" {
  description = "Where tenants upload FHIR files: <tenant_id>/<any path>/<file>."
  value       = module.data_lake.bucket_names.raw
}

output "lake_bucket" {
  description = "The silver and gold Hudi tables."
  value       = module.data_lake.bucket_names.lake
}

output "ledger_table" {
  description = "The ingest ledger (one item per raw file version)."
  value       = module.ledger.table_name
}

output "athena_workgroup" {
  description = "The workgroup Power BI connects with."
  value       = module.athena.workgroup_name
}

output "gold_views" {
  description = "The views Power BI reads (database.view)."
  value       = [for view in values(module.athena.view_names) : "${module.glue_catalog.database_names.gold}.${view}"]
}

output "backfill_workflow" {
  description = "Start a backfill with: aws glue start-workflow-run --name <this> --run-properties tenant_id=<t>,prefix=<p>"
  value       = module.glue_job.backfill_workflow_name
}

output "function_names" {
  description = "The Lambda functions."
  value       = [module.ingest_function.function_name, module.gold_function.function_name]
}

output "gold_reader_policy_arn" {
  description = "Attach to the identity Power BI connects as (docs/athena-power-bi.md)."
  value       = module.athena.gold_reader_policy_arn
}
