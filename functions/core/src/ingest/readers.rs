//! The reader adapters: the claimed version of an object (or a scale-out worker's span of it), fed
//! chunk by chunk to the FHIR reader on a blocking thread, with progress reports.

use std::io::{self, Read, Seek};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetResultPayload, ObjectStore};

use super::Progress;
use super::load::{FileLoad, LoadContext};
use crate::error::Result;
use crate::fhir::{self, FileError, ReadLimits};
use crate::scale_out::Span;

/// Streams the object (or the span of it a scale-out worker was given) through the FHIR reader on
/// a blocking thread (parsing is CPU work), building and staging silver rows as it goes.
pub(crate) async fn parse_object(
    source: Arc<dyn ObjectStore>,
    key: Path,
    mut pinned: GetOptions,
    span: Span,
    limits: ReadLimits,
    context: LoadContext,
    progress: Option<Progress>,
) -> Result<FileLoad, FileError> {
    let unreadable = |e: object_store::Error| {
        match e {
        object_store::Error::Precondition { .. } => FileError::Unreadable(
            "the object was replaced after it was claimed; the new version is processed as its own upload"
                .into(),
        ),
        e => FileError::Unreadable(e.to_string()),
    }
    };
    pinned.range = span.range();
    let result = source.get_opts(&key, pinned).await.map_err(unreadable)?;
    let size = result.meta.size;
    let name = key.filename().unwrap_or_default().to_owned();
    let input: Box<dyn Read + Send> = match result.payload {
        // A local file is read directly (no async hop per chunk), from the range asked for: the
        // payload is the whole file.
        GetResultPayload::File(mut file, _) => {
            file.seek(io::SeekFrom::Start(result.range.start))
                .map_err(|e| FileError::Unreadable(e.to_string()))?;
            Box::new(file.take(result.range.end - result.range.start))
        }
        GetResultPayload::Stream(stream) => {
            let (sender, receiver) = tokio::sync::mpsc::channel(8);
            tokio::spawn(async move {
                let mut stream = stream;
                while let Some(chunk) = stream.next().await {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
            });
            Box::new(ChannelReader {
                receiver,
                current: Bytes::new(),
            })
        }
    };
    let input = span.bound(input);
    let input: Box<dyn Read + Send> = match progress {
        Some(report) => Box::new(ProgressReader {
            inner: input,
            read: 0,
            next: report.every_bytes,
            size,
            ledger_id: context.ledger_id.clone(),
            report,
        }),
        None => input,
    };
    tokio::task::spawn_blocking(move || {
        let mut load = FileLoad::new(context);
        match span {
            Span::Whole => {
                fhir::read_file(input, &name, &limits, &mut |item| load.take(item))?;
            }
            Span::Lines { start, .. } => {
                let first = start == 0;
                load.lines =
                    fhir::read_ndjson_run(input, first, &limits, &mut |item| load.take(item))?;
            }
        }
        load.finish()
            .map_err(|e| FileError::Unreadable(format!("staging rows on local disk failed: {e}")))
    })
    .await
    .map_err(|e| FileError::Unreadable(format!("parser task failed: {e}")))?
}

/// Counts the object's bytes as the parser reads them and reports every `every_bytes`.
struct ProgressReader {
    inner: Box<dyn Read + Send>,
    read: u64,
    next: u64,
    size: u64,
    ledger_id: String,
    report: Progress,
}

impl Read for ProgressReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read >= self.next {
            (self.report.report)(&self.ledger_id, self.read, self.size);
            self.next = self.read + self.report.every_bytes.max(1);
        }
        Ok(n)
    }
}

/// A blocking `Read` over the chunks an async task fetches, so a streamed S3 body is parsed
/// without ever being held whole.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
