# terraform workspace select prod && terraform plan -var-file=prod.tfvars
aws_region                 = "eu-west-1"
lambda_architecture        = "x86_64"
ingest_max_concurrency     = 20
reserve_lambda_concurrency = true # needs a Lambda concurrency quota >= 122 (20 + 2 + the 100 AWS keeps unreserved)
glue_workers               = 8
alert_subscribers          = ["data-platform-oncall@example.org"]
notification_subscribers = {
  "quality@example.org"               = { tenants = [] }
  "quality-lead@st-marys.example.org" = { tenants = ["st-marys"] }
}
