output "database_names" {
  description = "Glue database by layer: bronze, silver, gold."
  value       = { for layer, database in aws_glue_catalog_database.layer : layer => database.name }
}

output "database_arns" {
  description = "Glue database ARN by layer."
  value       = { for layer, database in aws_glue_catalog_database.layer : layer => database.arn }
}

output "table_names" {
  description = "Table names by layer (what the functions register partitions in)."
  value       = { for layer, tables in local.tables : layer => keys(tables) }
}

output "gold_columns" {
  description = "Data columns of each gold table as [name, hive type] pairs (without _hoodie_* and the partition key), for the Athena views."
  value       = local.tables.gold
}
