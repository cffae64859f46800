# The ingest ledger: one item per raw object version (partition key ledger_id, a hash of bucket, key
# and ETag). The ingest function claims an item with a conditional UpdateItem before any work, so a
# redelivered or concurrent event for the same object does nothing.
#
# No TTL: an expired item would make a redelivered event process its file a second time, and the
# Glue job finishes HANDED_OFF items whenever it runs. Items are small (one per file).

resource "aws_dynamodb_table" "ledger" {
  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "ledger_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "ledger_id"
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
