//! The ledger in DynamoDB: one item per raw object version, keyed by `ledger_id`. A claim is one
//! conditional `UpdateItem` (absent, FAILED, or PROCESSING with an expired lease), so concurrent
//! invocations for the same object never both process it; `finish` is fenced by the attempt
//! number, so a worker whose lease expired cannot overwrite its successor's outcome.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use metriccare_core::ports::{Claim, Ledger, LedgerEntry, LedgerStatus, ObjectRef, Outcome};
use metriccare_core::{CoreError, Result};

use crate::error::AwsError;

/// The table's partition key.
pub const KEY_ATTRIBUTE: &str = "ledger_id";

type Item = HashMap<String, AttributeValue>;

pub struct DynamoDbLedger {
    client: Client,
    table: String,
}

fn ledger_error(
    operation: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> CoreError {
    CoreError::Ledger(AwsError::sdk("DynamoDB", operation, e).to_string())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// Attribute names go through `#placeholders`: `status`, `size` and `error` are reserved words.
fn names(attributes: &[&str]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|name| (format!("#{name}"), (*name).to_owned()))
        .collect()
}

impl DynamoDbLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn item(&self, id: &str) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| ledger_error("GetItem", e))?;
        Ok(output.item)
    }

    /// The answer to a conditional claim update: claimed (the new attempt), or refused for the
    /// reason the current item gives.
    async fn claim_answer(
        &self,
        id: &str,
        update: std::result::Result<
            aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
            aws_sdk_dynamodb::error::SdkError<UpdateItemError>,
        >,
    ) -> Result<Claim> {
        match update {
            Ok(output) => {
                let attempt = output
                    .attributes
                    .as_ref()
                    .and_then(|item| number(item, "attempts"))
                    .unwrap_or(1);
                Ok(Claim::Claimed {
                    attempt: attempt as u32,
                })
            }
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                let current = self
                    .item(id)
                    .await?
                    .map(|item| entry(&item))
                    .transpose()?
                    .ok_or_else(|| CoreError::Ledger(format!("no ledger item {id}")))?;
                Ok(Claim::refused_by(current))
            }
            Err(e) => Err(ledger_error("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl Ledger for DynamoDbLedger {
    async fn claim(
        &self,
        object: &ObjectRef,
        tenant_id: &str,
        now: i64,
        lease: Duration,
    ) -> Result<Claim> {
        let id = object.ledger_id();
        let lease_until = now + lease.as_micros() as i64;
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(&id))
            .update_expression(
                "SET #status = :processing, #attempts = if_not_exists(#attempts, :zero) + :one, \
                 #lease_until = :lease_until, #bucket = :bucket, #object_key = :object_key, \
                 #etag = :etag, #size = :size, #tenant_id = :tenant_id, \
                 #created_at = if_not_exists(#created_at, :now), #updated_at = :now \
                 REMOVE #error, #handed_off_to",
            )
            .condition_expression(
                "attribute_not_exists(#ledger_id) OR #status = :failed \
                 OR (#status = :processing AND #lease_until < :now)",
            )
            .set_expression_attribute_names(Some(names(&[
                "ledger_id",
                "status",
                "attempts",
                "lease_until",
                "bucket",
                "object_key",
                "etag",
                "size",
                "tenant_id",
                "created_at",
                "updated_at",
                "error",
                "handed_off_to",
            ])))
            .expression_attribute_values(":processing", s(LedgerStatus::Processing.as_str()))
            .expression_attribute_values(":failed", s(LedgerStatus::Failed.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":lease_until", n(lease_until))
            .expression_attribute_values(":bucket", s(&object.bucket))
            .expression_attribute_values(":object_key", s(&object.key))
            .expression_attribute_values(":etag", s(&object.etag))
            .expression_attribute_values(":size", n(object.size))
            .expression_attribute_values(":tenant_id", s(tenant_id))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        self.claim_answer(&id, claimed).await
    }

    async fn take_over(&self, id: &str, now: i64, lease: Duration) -> Result<Claim> {
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(id))
            .update_expression(
                "SET #status = :processing, #attempts = #attempts + :one, \
                 #lease_until = :lease_until, #updated_at = :now",
            )
            .condition_expression("#status = :handed_off")
            .set_expression_attribute_names(Some(names(&[
                "status",
                "attempts",
                "lease_until",
                "updated_at",
            ])))
            .expression_attribute_values(":processing", s(LedgerStatus::Processing.as_str()))
            .expression_attribute_values(":handed_off", s(LedgerStatus::HandedOff.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":lease_until", n(now + lease.as_micros() as i64))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        self.claim_answer(id, taken).await
    }

    async fn finish(
        &self,
        id: &str,
        attempt: u32,
        status: LedgerStatus,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool> {
        let counts: Item = outcome
            .counts
            .iter()
            .map(|(kind, count)| (kind.clone(), n(count)))
            .collect();
        let instants = outcome.silver_instants.iter().map(s).collect();
        // Absent optional text is removed rather than stored empty.
        let mut set: Vec<String> = [
            "status",
            "counts",
            "deleted",
            "rejected",
            "future_last_updated",
            "erased",
            "silver_instants",
            "lease_until",
            "updated_at",
        ]
        .iter()
        .map(|attribute| format!("#{attribute} = :{attribute}"))
        .collect();
        let mut remove = Vec::new();
        let mut request = self.client.update_item();
        for (attribute, value) in [
            ("error", &outcome.error),
            ("handed_off_to", &outcome.handed_off_to),
        ] {
            match value {
                Some(value) => {
                    set.push(format!("#{attribute} = :{attribute}"));
                    request =
                        request.expression_attribute_values(format!(":{attribute}"), s(value));
                }
                None => remove.push(format!("#{attribute}")),
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let result = request
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(id))
            .update_expression(expression)
            .condition_expression("#status = :processing AND #attempts = :attempt")
            .set_expression_attribute_names(Some(names(&[
                "status",
                "counts",
                "deleted",
                "rejected",
                "future_last_updated",
                "erased",
                "silver_instants",
                "lease_until",
                "updated_at",
                "error",
                "handed_off_to",
                "attempts",
            ])))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":processing", s(LedgerStatus::Processing.as_str()))
            .expression_attribute_values(":attempt", n(attempt))
            .expression_attribute_values(":counts", AttributeValue::M(counts))
            .expression_attribute_values(":deleted", n(outcome.deleted))
            .expression_attribute_values(":rejected", n(outcome.rejected))
            .expression_attribute_values(":future_last_updated", n(outcome.future_last_updated))
            .expression_attribute_values(":erased", n(outcome.erased))
            .expression_attribute_values(":silver_instants", AttributeValue::L(instants))
            .expression_attribute_values(":lease_until", n(0))
            .expression_attribute_values(":updated_at", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(ledger_error("UpdateItem", e)),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<LedgerEntry>> {
        self.item(id).await?.map(|item| entry(&item)).transpose()
    }

    async fn list(&self) -> Result<Vec<LedgerEntry>> {
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| ledger_error("Scan", e))?;
            for item in page.items() {
                entries.push(entry(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        entries.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        Ok(entries)
    }
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn entry(item: &Item) -> Result<LedgerEntry> {
    // Named by its id only: the item's object_key may name a patient.
    let required = |name: &str| {
        text(item, name).ok_or_else(|| {
            let id = text(item, KEY_ATTRIBUTE).unwrap_or_default();
            CoreError::Ledger(format!("ledger item {id:?} has no {name}"))
        })
    };
    let status = required("status")?;
    Ok(LedgerEntry {
        id: required(KEY_ATTRIBUTE)?,
        object: ObjectRef {
            bucket: required("bucket")?,
            key: required("object_key")?,
            etag: required("etag")?,
            size: number(item, "size").unwrap_or_default() as u64,
        },
        tenant_id: required("tenant_id")?,
        status: LedgerStatus::parse(&status)
            .ok_or_else(|| CoreError::Ledger(format!("unknown ledger status {status:?}")))?,
        attempts: number(item, "attempts").unwrap_or_default() as u32,
        lease_until: number(item, "lease_until").unwrap_or_default(),
        counts: item
            .get("counts")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default(),
        deleted: number(item, "deleted").unwrap_or_default() as u64,
        rejected: number(item, "rejected").unwrap_or_default() as u64,
        future_last_updated: number(item, "future_last_updated").unwrap_or_default() as u64,
        erased: number(item, "erased").unwrap_or_default() as u64,
        silver_instants: item
            .get("silver_instants")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        error: text(item, "error"),
        handed_off_to: text(item, "handed_off_to"),
        created_at: number(item, "created_at").unwrap_or_default(),
        updated_at: number(item, "updated_at").unwrap_or_default(),
    })
}
