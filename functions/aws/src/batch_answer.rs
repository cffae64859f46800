//! What the ingest function answers Lambda, as a pure function of what each notification came to.
//!
//! An SQS batch answers per message with `batchItemFailures` (the event source mapping has
//! `ReportBatchItemFailures`): a message is listed only when one of its objects failed or is held by
//! another worker, so that it alone comes back after the visibility timeout (and lands in the DLQ
//! after the queue's maxReceiveCount). An empty list means the whole batch is done; a batch must
//! never fail as a whole, or every message of it comes back. A plain S3 event (an asynchronous
//! invocation) has no such list: it fails as a whole, and Lambda retries it, when any of its objects
//! must be processed again (objects already done are not processed twice).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::AwsError;
use crate::ingest_function::FileSummary;

/// How the invocation was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// An SQS batch: each message's id, in the batch's order.
    Sqs(Vec<String>),
    /// One S3 notification invoking the function directly.
    S3,
}

impl Delivery {
    /// The SQS message id of the `index`th notification.
    pub(crate) fn message_id(&self, index: usize) -> Option<&str> {
        match self {
            Self::Sqs(ids) => ids.get(index).map(String::as_str),
            Self::S3 => None,
        }
    }

    /// How many notifications the invocation holds (one per SQS message).
    pub(crate) fn notifications(&self) -> usize {
        match self {
            Self::Sqs(ids) => ids.len(),
            Self::S3 => 1,
        }
    }
}

/// What one notification (one SQS message, or a plain S3 event) came to.
#[derive(Debug, Default)]
pub(crate) struct Handled {
    pub(crate) files: Vec<FileSummary>,
    /// Tenants with new silver commits.
    pub(crate) committed: BTreeSet<String>,
    /// Why the notification must be delivered again (empty: done).
    pub(crate) retry: Vec<String>,
}

/// The answer to an SQS batch, in the shape Lambda's partial batch responses take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchAnswer {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
    /// Each object's outcome (for the log and the caller; Lambda reads only the failures).
    pub files: Vec<FileSummary>,
}

/// One message to deliver again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// The answer to one invocation that needs no retry as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Batch(BatchAnswer),
    /// A plain S3 event whose objects are all done.
    Event {
        files: Vec<FileSummary>,
    },
}

/// The invocation's answer: for an SQS batch, the ids of the messages with something to retry;
/// for a plain S3 event, its files, or [`AwsError::Retry`] with every reason when any object must be
/// processed again. `handled` has one entry per notification, in the delivery's order.
pub(crate) fn answer(delivery: Delivery, handled: Vec<Handled>) -> Result<Answer, AwsError> {
    debug_assert_eq!(delivery.notifications(), handled.len());
    match delivery {
        Delivery::Sqs(message_ids) => {
            let mut batch = BatchAnswer {
                batch_item_failures: Vec::new(),
                files: Vec::new(),
            };
            for (id, notification) in message_ids.into_iter().zip(handled) {
                if !notification.retry.is_empty() {
                    batch.batch_item_failures.push(ItemFailure {
                        item_identifier: id,
                    });
                }
                batch.files.extend(notification.files);
            }
            Ok(Answer::Batch(batch))
        }
        Delivery::S3 => {
            let mut retry = Vec::new();
            let mut files = Vec::new();
            for notification in handled {
                retry.extend(notification.retry);
                files.extend(notification.files);
            }
            if retry.is_empty() {
                Ok(Answer::Event { files })
            } else {
                Err(AwsError::Retry(retry.join("; ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use metriccare_core::ingest::FileResult;
    use serde_json::json;

    use super::*;

    fn file(ledger_id: &str, result: FileResult) -> FileSummary {
        FileSummary {
            ledger_id: ledger_id.into(),
            tenant_id: "t1".into(),
            result,
            bytes: 10,
            resources: 2,
            rejected: 0,
            error: None,
        }
    }

    fn handled(files: Vec<FileSummary>, retry: &[&str]) -> Handled {
        Handled {
            files,
            committed: BTreeSet::new(),
            retry: retry.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn ids(ids: &[&str]) -> Delivery {
        Delivery::Sqs(ids.iter().map(|id| id.to_string()).collect())
    }

    #[test]
    fn a_batch_lists_only_the_messages_with_something_to_retry() {
        // GIVEN three messages, the second with a file held by another worker
        let handled = vec![
            handled(vec![file("a", FileResult::Completed)], &[]),
            handled(
                vec![file("b", FileResult::Busy)],
                &["b: held by another worker"],
            ),
            handled(vec![file("c", FileResult::AlreadyDone)], &[]),
        ];
        // WHEN answered
        let answer = answer(ids(&["m1", "m2", "m3"]), handled).unwrap();
        // THEN only the second message comes back, and every file is reported in order
        let Answer::Batch(batch) = &answer else {
            panic!("an SQS batch gets a batch answer: {answer:?}")
        };
        assert_eq!(
            batch.batch_item_failures,
            vec![ItemFailure {
                item_identifier: "m2".into()
            }]
        );
        let ledger_ids: Vec<&str> = batch.files.iter().map(|f| f.ledger_id.as_str()).collect();
        assert_eq!(ledger_ids, ["a", "b", "c"]);
        // AND the JSON is the shape Lambda reads
        let value = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            value["batchItemFailures"],
            json!([{"itemIdentifier": "m2"}])
        );
    }

    #[test]
    fn a_batch_with_nothing_to_retry_says_so_with_an_empty_list() {
        // GIVEN two messages that are done (one was a test event: no files)
        let handled = vec![
            handled(vec![], &[]),
            handled(vec![file("a", FileResult::Quarantined)], &[]),
        ];
        // WHEN answered
        let value = serde_json::to_value(answer(ids(&["m1", "m2"]), handled).unwrap()).unwrap();
        // THEN the list is present and empty: the whole batch is deleted from the queue
        assert_eq!(value["batchItemFailures"], json!([]));
        assert_eq!(value["files"][0]["result"], json!("quarantined"));
    }

    #[test]
    fn a_message_with_several_reasons_is_listed_once() {
        let handled = vec![handled(
            vec![file("a", FileResult::Failed), file("b", FileResult::Busy)],
            &["a: failed", "b: held by another worker"],
        )];
        let Answer::Batch(batch) = answer(ids(&["m1"]), handled).unwrap() else {
            panic!("an SQS batch gets a batch answer")
        };
        assert_eq!(batch.batch_item_failures.len(), 1);
    }

    #[test]
    fn a_plain_s3_event_that_is_done_answers_with_its_files_only() {
        let handled = vec![handled(vec![file("a", FileResult::Completed)], &[])];
        let value = serde_json::to_value(answer(Delivery::S3, handled).unwrap()).unwrap();
        assert_eq!(value.get("batchItemFailures"), None);
        assert_eq!(value["files"][0]["ledger_id"], json!("a"));
    }

    #[test]
    fn a_plain_s3_event_with_something_to_retry_fails_with_every_reason() {
        // GIVEN one event whose two objects both must be processed again
        let handled = vec![handled(
            vec![file("a", FileResult::Failed), file("b", FileResult::Busy)],
            &["a: storage timeout", "b: held by another worker"],
        )];
        // WHEN answered
        let error = answer(Delivery::S3, handled).unwrap_err();
        // THEN the invocation fails (Lambda retries it), naming both
        assert!(
            matches!(&error, AwsError::Retry(reasons) if reasons == "a: storage timeout; b: held by another worker"),
            "{error}"
        );
    }
}
