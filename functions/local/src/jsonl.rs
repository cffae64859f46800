//! Notifications as JSON lines appended to a file (`<lake>/notifications.jsonl`): the embedded
//! default's stand-in for the SNS topics. Each message is one `write` of one line, so concurrent
//! processes appending to the same file do not interleave within a line.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use metriccare_core::ports::{Message, Notifier};
use metriccare_core::{CoreError, Result};

pub struct JsonLinesNotifier {
    path: PathBuf,
}

impl JsonLinesNotifier {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

#[async_trait]
impl Notifier for JsonLinesNotifier {
    async fn publish(&self, message: &Message) -> Result<()> {
        let mut line = serde_json::to_vec(&serde_json::json!({
            "at": metriccare_core::time::rfc3339(metriccare_core::time::now_micros()),
            "topic": message.topic,
            "event": message.event,
            "tenant_id": message.tenant_id,
            "subject": message.subject,
            "text": message.text,
            "data": message.data,
        }))?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| CoreError::Notifier(format!("{}: {e}", self.path.display())))?;
        file.write_all(&line)
            .map_err(|e| CoreError::Notifier(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use metriccare_core::ports::Topic;

    use super::*;

    #[tokio::test]
    async fn appends_one_json_line_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = JsonLinesNotifier::new(dir.path().join("n.jsonl"));
        let message = Message {
            topic: Topic::Alerts,
            event: "file.quarantined".into(),
            tenant_id: Some("t1".into()),
            subject: "s".into(),
            text: "body".into(),
            data: serde_json::json!({"ledger_id": "abc"}),
        };
        notifier.publish(&message).await.unwrap();
        notifier.publish(&message).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("n.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["topic"], "alerts");
        assert_eq!(lines[1]["data"]["ledger_id"], "abc");
    }
}
