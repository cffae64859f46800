//! Counts the requests a process makes of the lake store, by kind: what an object store bills and
//! what grows when a table decays. The CLI prints them after each run; on a local lake they are the
//! requests the same run would make of S3.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::Serialize;

/// Requests so far, by kind. A multipart upload counts once (its parts are not counted: only base
/// files over 8 MiB and quarantine copies use them); DELETE counts objects (S3 deletes up to 1,000
/// in one request).
#[derive(Debug, Default)]
pub struct RequestCounter {
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    copy: AtomicU64,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    pub get: u64,
    pub head: u64,
    pub put: u64,
    pub list: u64,
    pub delete: u64,
    pub copy: u64,
}

impl RequestCounter {
    pub fn requests(&self) -> Requests {
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Requests {
            get: read(&self.get),
            head: read(&self.head),
            put: read(&self.put),
            list: read(&self.list),
            delete: read(&self.delete),
            copy: read(&self.copy),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Display for Requests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GET {}, HEAD {}, PUT {}, LIST {}, DELETE {}, COPY {}",
            self.get, self.head, self.put, self.list, self.delete, self.copy
        )
    }
}

/// An object store that counts every request it passes on.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counter: Arc<RequestCounter>,
}

impl CountingStore {
    pub fn wrap(
        inner: Arc<dyn ObjectStore>,
        counter: &Arc<RequestCounter>,
    ) -> Arc<dyn ObjectStore> {
        Arc::new(Self {
            inner,
            counter: counter.clone(),
        })
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        RequestCounter::count(&self.counter.put);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        RequestCounter::count(&self.counter.put);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let kind = if options.head {
            &self.counter.head
        } else {
            &self.counter.get
        };
        RequestCounter::count(kind);
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let counter = self.counter.clone();
        let counted = locations
            .inspect(move |_| RequestCounter::count(&counter.delete))
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        RequestCounter::count(&self.counter.list);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        RequestCounter::count(&self.counter.list);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        RequestCounter::count(&self.counter.copy);
        self.inner.copy_opts(from, to, options).await
    }
}
