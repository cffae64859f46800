//! The two conditional shapes the lake's control files are written and read with: a
//! create-if-absent write (`If-None-Match: *` on S3) whose refusal is an answer, not an error, and
//! a read of an object that may not exist.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

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
