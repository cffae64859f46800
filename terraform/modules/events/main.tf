# What starts the gold function (a schedule, and the ingest function's silver.committed event) and
# how Glue job failures reach the alerts topic. The Glue rule is wiring, not code: it alerts even
# when no function of ours can start.

locals {
  gold_triggers = {
    schedule = {
      description         = "Refresh gold on a schedule: catches anything an event missed."
      schedule_expression = var.gold_schedule
      event_pattern       = null
      event_bus_name      = "default" # scheduled rules run on the default bus
    }
    silver_committed = {
      description         = "Refresh gold after the ingest function committed to silver."
      schedule_expression = null
      event_pattern = jsonencode({
        source        = ["metriccare.ingest"]
        "detail-type" = ["silver.committed"]
      })
      event_bus_name = var.event_bus_name
    }
  }
}

resource "aws_cloudwatch_event_rule" "gold" {
  for_each = local.gold_triggers

  name                = "metriccare_gold_${each.key}_${var.environment}"
  description         = each.value.description
  schedule_expression = each.value.schedule_expression
  event_pattern       = each.value.event_pattern
  event_bus_name      = each.value.event_bus_name
}

resource "aws_cloudwatch_event_target" "gold" {
  for_each = local.gold_triggers

  rule           = aws_cloudwatch_event_rule.gold[each.key].name
  event_bus_name = each.value.event_bus_name
  arn            = var.gold_function_arn
}

resource "aws_lambda_permission" "gold" {
  for_each = local.gold_triggers

  statement_id  = "metriccare_gold_${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = var.gold_function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.gold[each.key].arn
}

resource "aws_cloudwatch_event_rule" "glue_failed" {
  name        = "metriccare_ops_glue_failed_${var.environment}"
  description = "A MetricCare Glue job run failed, timed out or was stopped."
  event_pattern = jsonencode({
    source        = ["aws.glue"]
    "detail-type" = ["Glue Job State Change"]
    detail = {
      jobName = var.glue_job_names
      state   = ["FAILED", "TIMEOUT", "STOPPED"]
    }
  })
}

resource "aws_cloudwatch_event_target" "glue_failed" {
  rule = aws_cloudwatch_event_rule.glue_failed.name
  arn  = var.alerts_topic_arn

  # The same shape as the ingest function's alerts (event, subject, data), so one subscriber
  # handles both. The job run id leads to the ledger item (handed_off_to) and the job's logs.
  input_transformer {
    input_paths = {
      job     = "$.detail.jobName"
      run     = "$.detail.jobRunId"
      state   = "$.detail.state"
      message = "$.detail.message"
    }
    input_template = <<-TEMPLATE
      {"event": "glue.failed", "subject": "MetricCare: Glue job <job> <state>", "data": {"job_name": <job>, "job_run_id": <run>, "state": <state>, "message": <message>}}
    TEMPLATE
  }
}
