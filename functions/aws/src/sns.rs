//! The notifier on SNS: the notifications topic for `gold.refreshed`, the alerts topic for files
//! that were quarantined or failed. One publish carries both bodies (`MessageStructure = json`):
//! e-mail subscribers get the readable text, machine subscribers (SQS, Lambda, HTTPS) the JSON.
//! The `event` and `tenant_id` message attributes let subscriptions filter by tenant.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use metriccare_core::ports::{Message, Notifier, Topic};
use metriccare_core::{CoreError, Result};
use serde_json::json;

use crate::error::AwsError;

pub struct SnsNotifier {
    client: Client,
    /// The topics this function may publish to; publishing elsewhere is an error.
    topics: Vec<(Topic, String)>,
}

/// SNS subjects: at most 100 printable ASCII characters, no line breaks.
const SUBJECT_LIMIT: usize = 100;

impl SnsNotifier {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            topics: Vec::new(),
        }
    }

    /// Routes `topic` to the SNS topic `arn`.
    pub fn with_topic(mut self, topic: Topic, arn: impl Into<String>) -> Self {
        self.topics.push((topic, arn.into()));
        self
    }

    fn topic_arn(&self, topic: Topic) -> Result<&str> {
        self.topics
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, arn)| arn.as_str())
            .ok_or_else(|| CoreError::Notifier(format!("this function has no {topic:?} topic")))
    }
}

/// The per-protocol bodies of one message.
pub fn message_bodies(message: &Message) -> Result<String> {
    let machine = serde_json::to_string(&json!({
        "event": message.event,
        "tenant_id": message.tenant_id,
        "subject": message.subject,
        "data": message.data,
    }))?;
    // `email-json` is e-mail too: it leaves the analytics boundary, so it gets the text.
    Ok(serde_json::to_string(&json!({
        "default": message.text,
        "email": message.text,
        "email-json": message.text,
        "sqs": machine,
        "lambda": machine,
        "http": machine,
        "https": machine,
    }))?)
}

pub fn subject(text: &str) -> String {
    let printable: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    let mut subject = printable.split_whitespace().collect::<Vec<_>>().join(" ");
    subject.truncate(SUBJECT_LIMIT);
    subject
}

fn attribute(value: &str) -> Result<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| CoreError::Notifier(e.to_string()))
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, message: &Message) -> Result<()> {
        let mut request = self
            .client
            .publish()
            .topic_arn(self.topic_arn(message.topic)?)
            .subject(subject(&message.subject))
            .message_structure("json")
            .message(message_bodies(message)?)
            .message_attributes("event", attribute(&message.event)?);
        if let Some(tenant) = &message.tenant_id {
            request = request.message_attributes("tenant_id", attribute(tenant)?);
        }
        request
            .send()
            .await
            .map_err(|e| CoreError::Notifier(AwsError::sdk("SNS", "Publish", e).to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_single_line_ascii_within_the_limit() {
        let long = format!("MetricCare: ré\nfresh {}", "x".repeat(200));
        let subject = subject(&long);
        assert!(subject.len() <= SUBJECT_LIMIT);
        assert!(subject.starts_with("MetricCare: r fresh x"));
        assert!(subject.chars().all(|c| c.is_ascii_graphic() || c == ' '));
    }

    #[test]
    fn email_gets_the_text_and_machines_the_json() {
        let message = Message {
            topic: Topic::Notifications,
            event: "gold.refreshed".into(),
            tenant_id: Some("clinic-1".into()),
            subject: "s".into(),
            text: "Stays: <11".into(),
            data: json!({"stays": 4}),
        };
        let bodies: serde_json::Value =
            serde_json::from_str(&message_bodies(&message).unwrap()).unwrap();
        assert_eq!(bodies["email"], "Stays: <11");
        assert_eq!(bodies["email-json"], "Stays: <11");
        assert_eq!(bodies["default"], "Stays: <11");
        let machine: serde_json::Value =
            serde_json::from_str(bodies["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(machine["data"]["stays"], 4);
        assert_eq!(machine["tenant_id"], "clinic-1");
    }
}
