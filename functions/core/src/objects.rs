//! The two conditional shapes the lake's control files are written and read with: a
//! create-if-absent write (`If-None-Match: *` on S3) whose refusal is an answer, not an error, and
//! a read of an object that may not exist; and local files streamed to and from the store.

use std::io::{Read, Seek, Write};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

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

/// Uploads a local file to `path` in parts, never holding it whole in memory.
pub async fn upload_file(store: &dyn ObjectStore, path: &Path, file: std::fs::File) -> Result<()> {
    let mut writer = WriteMultipart::new(store.put_multipart(path).await?);
    let mut reader = std::io::BufReader::new(file);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        writer.write(&chunk[..n]);
    }
    writer.finish().await?;
    Ok(())
}

/// Streams the object at `path` into an anonymous temporary file, rewound; `None` when it does not
/// exist.
pub async fn download(store: &dyn ObjectStore, path: &Path) -> Result<Option<std::fs::File>> {
    let mut stream = match store.get(path).await {
        Ok(found) => found.into_stream(),
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut file = tempfile::tempfile()?;
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?)?;
    }
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok(Some(file))
}
