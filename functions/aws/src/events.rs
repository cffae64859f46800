//! The events the ingest function receives, parsed tolerantly: an SQS batch whose bodies are S3
//! notifications (possibly wrapped in an SNS envelope), or a plain S3 event. Only what is needed is
//! read; absent optional fields (`userIdentity`, `requestParameters`, `eTag`, `versionId`, …) are
//! fine. Keys arrive URL-encoded (`+` for a space, `%XX` for the rest) and are decoded here.

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

/// What one invocation asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Trigger {
    /// SQS records, each to be answered on its own in the batch response.
    Sqs(Vec<SqsMessage>),
    /// A plain S3 notification (the function subscribed to the bucket directly).
    S3(Notification),
}

#[derive(Debug, PartialEq, Eq)]
pub struct SqsMessage {
    pub message_id: String,
    /// The body, parsed; a body that is not an S3 notification is `Err` with the reason.
    pub notification: Result<Notification, String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Notification {
    /// `s3:TestEvent`, sent once when a bucket's notifications are configured.
    Test,
    Records(Vec<S3Record>),
}

/// One S3 event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Record {
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`, …
    pub event_name: String,
    pub bucket: String,
    /// Decoded object key.
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

impl S3Record {
    pub fn is_object_created(&self) -> bool {
        self.event_name.starts_with("ObjectCreated:")
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised event: {0}")]
pub struct UnknownEvent(String);

#[derive(Deserialize)]
struct RawRecords {
    #[serde(rename = "Records")]
    records: Vec<Value>,
}

#[derive(Deserialize)]
struct RawSqsRecord {
    #[serde(rename = "messageId")]
    message_id: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
struct RawS3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: RawS3Entity,
}

#[derive(Deserialize)]
struct RawS3Entity {
    bucket: RawBucket,
    object: RawObject,
}

#[derive(Deserialize)]
struct RawBucket {
    name: String,
}

#[derive(Deserialize)]
struct RawObject {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

/// Reads an invocation's payload.
pub fn parse_trigger(event: &Value) -> Result<Trigger, UnknownEvent> {
    let records = RawRecords::deserialize(event)
        .map_err(|_| UnknownEvent("no Records array".into()))?
        .records;
    let source = records
        .first()
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match source {
        "aws:sqs" => records
            .into_iter()
            .map(|record| {
                let raw = RawSqsRecord::deserialize(&record)
                    .map_err(|e| UnknownEvent(format!("SQS record: {e}")))?;
                Ok(SqsMessage {
                    message_id: raw.message_id,
                    notification: parse_notification(&raw.body),
                })
            })
            .collect::<Result<_, _>>()
            .map(Trigger::Sqs),
        "aws:s3" => s3_records(records).map(Trigger::S3).map_err(UnknownEvent),
        "" if records.is_empty() => Ok(Trigger::S3(Notification::Records(Vec::new()))),
        other => Err(UnknownEvent(format!("event source {other:?}"))),
    }
}

/// Reads an S3 notification from an SQS body: the notification itself, or an SNS envelope
/// around it (bucket → SNS → SQS fan-out).
pub fn parse_notification(body: &str) -> Result<Notification, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        let inner = value
            .get("Message")
            .and_then(Value::as_str)
            .ok_or("an SNS envelope without Message")?;
        return parse_notification(inner);
    }
    let records = RawRecords::deserialize(&value)
        .map_err(|_| "not an S3 notification (no Records array)".to_owned())?
        .records;
    s3_records(records)
}

fn s3_records(records: Vec<Value>) -> Result<Notification, String> {
    records
        .into_iter()
        .map(|record| {
            let raw = RawS3Record::deserialize(&record).map_err(|e| format!("S3 record: {e}"))?;
            Ok(S3Record {
                event_name: raw.event_name,
                bucket: raw.s3.bucket.name,
                key: decode_key(&raw.s3.object.key)?,
                size: raw.s3.object.size,
                etag: raw.s3.object.etag.filter(|e| !e.is_empty()),
                version_id: raw.s3.object.version_id.filter(|v| !v.is_empty()),
            })
        })
        .collect::<Result<_, _>>()
        .map(Notification::Records)
}

/// S3 event keys are form-encoded: `+` is a space, everything else is `%XX` (a literal `+` is
/// `%2B`), so `+` must be replaced before percent-decoding.
pub fn decode_key(encoded: &str) -> Result<String, String> {
    let spaced = encoded.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| "the object key is not UTF-8 once decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn s3_event(key: &str) -> Value {
        // As an emulator sends it: no userIdentity, requestParameters or versionId.
        json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "raw"}, "object": {"key": key, "size": 12, "eTag": "abc"}}
        }]})
    }

    #[test]
    fn keys_are_decoded_plus_first() {
        assert_eq!(
            decode_key("clinic-1/J%C3%BCrgen+M%C3%BCller%2Bco/a%2Fb.ndjson").unwrap(),
            "clinic-1/Jürgen Müller+co/a/b.ndjson"
        );
        assert!(decode_key("a/%FF.json").is_err());
    }

    #[test]
    fn a_plain_s3_event_without_optional_fields() {
        let trigger = parse_trigger(&s3_event("t1/export+1/a.ndjson")).unwrap();
        let Trigger::S3(Notification::Records(records)) = trigger else {
            panic!("{trigger:?}")
        };
        assert_eq!(records[0].key, "t1/export 1/a.ndjson");
        assert_eq!(records[0].size, Some(12));
        assert_eq!(records[0].version_id, None);
        assert!(records[0].is_object_created());
    }

    #[test]
    fn an_sqs_batch_with_test_event_s3_body_sns_envelope_and_garbage() {
        let s3_body = s3_event("t1/a.ndjson").to_string();
        let envelope = json!({"Type": "Notification", "Message": s3_body}).to_string();
        let event = json!({"Records": [
            {"messageId": "m1", "eventSource": "aws:sqs",
             "body": json!({"Service": "Amazon S3", "Event": "s3:TestEvent"}).to_string()},
            {"messageId": "m2", "eventSource": "aws:sqs", "body": s3_body},
            {"messageId": "m3", "eventSource": "aws:sqs", "body": envelope},
            {"messageId": "m4", "eventSource": "aws:sqs", "body": "not json"},
        ]});
        let Trigger::Sqs(messages) = parse_trigger(&event).unwrap() else {
            panic!()
        };
        assert_eq!(messages[0].notification, Ok(Notification::Test));
        assert_eq!(messages[1].notification, messages[2].notification);
        assert!(
            matches!(&messages[1].notification, Ok(Notification::Records(r)) if r[0].key == "t1/a.ndjson")
        );
        assert!(messages[3].notification.is_err());
    }

    #[test]
    fn anything_else_is_unknown() {
        for event in [
            json!({}),
            json!({"Records": [{"eventSource": "aws:dynamodb"}]}),
            json!([1, 2]),
        ] {
            assert!(parse_trigger(&event).is_err(), "{event}");
        }
    }
}
