//! What is kept out of the lake: quarantined files and rejected resources (in the quarantine
//! store), and the alerts about quarantined and failed files.

use std::io::{Seek, Write};

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde_json::json;

use super::group::GroupFile;
use super::{FileReport, FileResult, Services};
use crate::error::{CoreError, Result};
use crate::fhir::Position;
use crate::objects;
use crate::ports::{Message, Topic};
use crate::tenant::TenantId;
use crate::time::now_micros;

impl Services {
    /// Quarantined and failed files reach the alerts topic; a notifier failure is logged, never
    /// allowed to change the file's outcome.
    pub(super) async fn alert(&self, report: &FileReport) {
        let event = match report.result {
            FileResult::Quarantined => "file.quarantined",
            _ => "file.failed",
        };
        let message = Message {
            topic: Topic::Alerts,
            event: event.to_owned(),
            tenant_id: Some(report.tenant_id.clone()),
            subject: format!(
                "MetricCare: a file of tenant {} was {}",
                report.tenant_id,
                match report.result {
                    FileResult::Quarantined => "quarantined",
                    _ => "not processed",
                }
            ),
            text: format!(
                "Ledger id {} ({} bytes): {}",
                report.ledger_id,
                report.bytes,
                report.outcome.error.as_deref().unwrap_or("unknown error")
            ),
            data: json!({"ledger_id": report.ledger_id, "tenant_id": report.tenant_id, "error": report.outcome.error}),
        };
        if let Err(e) = self.notifier.publish(&message).await {
            tracing::error!(error = %e, ledger_id = %report.ledger_id, "alert could not be published");
        }
    }

    /// Uploads the file's rejects to `rejects/<tenant>/<ledger id>.ndjson`, streamed from disk.
    pub(super) async fn upload_rejects(
        &self,
        tenant: &TenantId,
        ledger_id: &str,
        rejects: &mut RejectLog,
    ) -> Result<()> {
        let file = rejects.seal()?;
        let path = Path::from("rejects")
            .join(tenant.as_str())
            .join(format!("{ledger_id}.ndjson"));
        objects::upload_file(self.quarantine.as_ref(), &path, file).await?;
        Ok(())
    }

    /// Copies the file to `files/<tenant>/<ledger id>/` with a `reason.json` beside it. It reads the
    /// object by the path it was claimed under: rebuilding the path from the key's text would
    /// percent-encode characters (non-ASCII, `#`, `%`...) and name another object.
    pub(crate) async fn quarantine(&self, file: &GroupFile, reason: &str) -> Result<()> {
        let (claimed, object, ledger_id) = (&file.claimed, &file.object, file.ledger_id.as_str());
        let dir = Path::from("files")
            .join(file.tenant.as_str())
            .join(ledger_id);
        let name = object
            .key
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("object");
        let upload = self
            .quarantine
            .put_multipart(&dir.clone().join(name))
            .await?;
        let mut writer = WriteMultipart::new(upload);
        let mut stream = claimed
            .store
            .get_opts(&claimed.key, claimed.pinned.clone())
            .await?
            .into_stream();
        while let Some(chunk) = stream.next().await {
            writer.write(&chunk?);
        }
        writer.finish().await?;
        let record = json!({
            "ledger_id": ledger_id,
            "bucket": object.bucket,
            "key": object.key,
            "etag": object.etag,
            "reason": reason,
            "quarantined_at": crate::time::rfc3339(now_micros()),
        });
        self.quarantine
            .put(
                &dir.clone().join("reason.json"),
                PutPayload::from(record.to_string()),
            )
            .await?;
        Ok(())
    }
}

/// The rejected resources of one file, as JSON lines in a local temporary file (they can be as
/// many as the resources).
pub(crate) struct RejectLog {
    file: Option<std::io::BufWriter<std::fs::File>>,
    pub(crate) count: u64,
}

impl RejectLog {
    pub(crate) fn new() -> Self {
        Self {
            file: None,
            count: 0,
        }
    }

    pub(crate) fn add(
        &mut self,
        ledger_id: &str,
        position: Position,
        reason: &str,
        raw: Option<&str>,
    ) -> Result<()> {
        let resource =
            raw.map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap_or_else(|_| r.into()));
        self.add_value(
            ledger_id,
            position,
            reason,
            resource.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Adds a reject whose resource is already JSON (`null` when there is none).
    pub(crate) fn add_value(
        &mut self,
        ledger_id: &str,
        position: Position,
        reason: &str,
        resource: serde_json::Value,
    ) -> Result<()> {
        let writer = match &mut self.file {
            Some(writer) => writer,
            None => self
                .file
                .insert(std::io::BufWriter::new(tempfile::tempfile()?)),
        };
        let line = json!({
            "source_file_id": ledger_id,
            "position": position.to_string(),
            "reason": reason,
            "resource": resource,
        });
        serde_json::to_writer(&mut *writer, &line)?;
        writer.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// The log rewound for reading.
    pub(crate) fn seal(&mut self) -> Result<std::fs::File> {
        let writer = self.file.take().ok_or(CoreError::Invariant(
            "a reject log sealed with no reject in it, or twice",
        ))?;
        let mut file = writer
            .into_inner()
            .map_err(|e| CoreError::Io(e.into_error()))?;
        file.seek(std::io::SeekFrom::Start(0))?;
        Ok(file)
    }
}
