# terraform workspace select dev && terraform plan -var-file=dev.tfvars
aws_region             = "eu-west-1"
ingest_max_concurrency = 4
glue_workers           = 2
force_destroy_buckets  = true
alert_subscribers      = ["data-platform@example.org"]
notification_subscribers = {
  "quality@example.org" = { tenants = [] }
}
