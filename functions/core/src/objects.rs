//! The two conditional shapes the lake's control files are written and read with: a
//! create-if-absent write (`If-None-Match: *` on S3) whose refusal is an answer, not an error, and
//! a read of an object that may not exist; and local files streamed to and from the store.

use std::io::SeekFrom;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::error::Result;

/// Writes `payload` at `path` unless an object is there: `false` when one was.
pub async fn create(store: &dyn ObjectStore, path: &Path, payload: PutPayload) -> Result<bool> {
    match store
        .put_opts(path, payload, PutOptions::from(PutMode::Create))
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The object's bytes, `None` when it does not exist.
pub async fn read(store: &dyn ObjectStore, path: &Path) -> Result<Option<Bytes>> {
    match store.get(path).await {
        Ok(found) => Ok(Some(found.bytes().await?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A file up to this size is uploaded in one request; a bigger one in parts, streamed.
const SINGLE_PUT_BYTES: u64 = 8 << 20;

/// Uploads a local file (all of it, whatever its position) to `path`; returns its size. A small
/// file is one put; a bigger one is uploaded in parts, streamed, at most two in flight, so it is
/// never held whole in memory.
pub async fn upload_file(store: &dyn ObjectStore, path: &Path, file: std::fs::File) -> Result<u64> {
    // Read through Tokio's file, whose reads run on the blocking pool.
    let mut file = tokio::fs::File::from_std(file);
    let size = file.seek(SeekFrom::End(0)).await?;
    file.seek(SeekFrom::Start(0)).await?;
    if size <= SINGLE_PUT_BYTES {
        let mut bytes = Vec::with_capacity(size as usize);
        file.read_to_end(&mut bytes).await?;
        store.put(path, PutPayload::from(bytes)).await?;
        return Ok(size);
    }
    let mut upload = WriteMultipart::new(store.put_multipart(path).await?);
    match copy_parts(&mut upload, &mut file).await {
        Ok(()) => {
            upload.finish().await?;
        }
        Err(e) => {
            // Parts of an unfinished upload are billed until aborted; the commit's roll-back
            // only removes objects, so abort here. The write's error is the one that matters.
            if let Err(abort) = upload.abort().await {
                tracing::warn!(error = %abort, "aborting a failed multipart upload failed");
            }
            return Err(e);
        }
    }
    Ok(size)
}

async fn copy_parts(upload: &mut WriteMultipart, file: &mut tokio::fs::File) -> Result<()> {
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        upload.wait_for_capacity(2).await?;
        upload.write(&chunk[..n]);
    }
}

/// Streams the object at `path` into an anonymous temporary file, rewound; `None` when it does not
/// exist.
pub async fn download(store: &dyn ObjectStore, path: &Path) -> Result<Option<std::fs::File>> {
    let mut stream = match store.get(path).await {
        Ok(found) => found.into_stream(),
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Written through Tokio's file, whose writes run on the blocking pool.
    let mut file = tokio::io::BufWriter::with_capacity(
        1 << 20,
        tokio::fs::File::from_std(tempfile::tempfile()?),
    );
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).await?;
    }
    file.flush().await?;
    let mut file = file.into_inner();
    file.seek(SeekFrom::Start(0)).await?;
    Ok(Some(file.into_std().await))
}
