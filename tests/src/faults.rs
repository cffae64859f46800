//! Fault injection: wrappers around the storage and ledger ports that count every call and make the
//! N-th one fail as an error, a timeout or the process stopping.

use std::fmt;
use std::future::Future;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use metriccare_core::CoreError;
use metriccare_core::ingest::{Services, Settings};
use metriccare_core::ports::{Claim, Ledger, LedgerEntry, LedgerStatus, ObjectRef, Outcome};
use metriccare_local::LocalLake;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// How an injected fault shows itself to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails and changes nothing.
    Error,
    /// The call takes effect but its answer is lost: the caller sees a failure.
    Timeout,
    /// The process stops at this call: it and every later call fail without taking effect.
    Stop,
}

/// Counts the calls of every port it wraps and decides which one fails.
#[derive(Debug)]
pub struct FaultPlan {
    fault: Fault,
    /// The call (from 1) that fails; 0 never fails.
    fail_at: usize,
    /// Only writes whose path ends with this count; empty: every call counts.
    only_writes_ending_with: String,
    /// What each counted call was ("lake put <path>", "ledger claim <id>"), in order: its length
    /// is the count, and it names the failing call in assertion messages.
    log: Mutex<Vec<String>>,
    /// Where the process waits for the test, if anywhere (see [`FaultPlan::pausing_write`]).
    pause: Option<Pause>,
}

/// The first write whose path ends with `suffix` waits until the test resumes it.
#[derive(Debug)]
struct Pause {
    suffix: String,
    taken: std::sync::atomic::AtomicBool,
    reached: tokio::sync::Notify,
    resume: tokio::sync::Notify,
}

/// What a wrapper does with one call.
enum Step {
    Run,
    Refuse,
    RunThenFail,
}

impl FaultPlan {
    /// A plan that only counts (a clean run).
    pub fn counting() -> Arc<Self> {
        Self::failing(Fault::Error, 0)
    }

    /// A plan whose `at`-th call (from 1) fails as `fault`.
    pub fn failing(fault: Fault, at: usize) -> Arc<Self> {
        Self::failing_write(fault, at, "")
    }

    /// A plan that counts only the writes (`put`) whose path ends with `suffix`, and fails the
    /// `at`-th of them as `fault`.
    pub fn failing_write(fault: Fault, at: usize, suffix: &str) -> Arc<Self> {
        Arc::new(Self {
            fault,
            fail_at: at,
            only_writes_ending_with: suffix.to_owned(),
            log: Mutex::new(Vec::new()),
            pause: None,
        })
    }

    /// A plan that fails nothing but stops the process before its first write whose path ends
    /// with `suffix`, until [`FaultPlan::resume`]: a test can run another writer in between.
    pub fn pausing_write(suffix: &str) -> Arc<Self> {
        Arc::new(Self {
            fault: Fault::Error,
            fail_at: 0,
            only_writes_ending_with: String::new(),
            log: Mutex::new(Vec::new()),
            pause: Some(Pause {
                suffix: suffix.to_owned(),
                taken: false.into(),
                reached: tokio::sync::Notify::new(),
                resume: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Waits until the process is paused at its write.
    pub async fn paused(&self) {
        self.pause
            .as_ref()
            .expect("a pausing plan")
            .reached
            .notified()
            .await;
    }

    /// Lets the paused write go on.
    pub fn resume(&self) {
        self.pause
            .as_ref()
            .expect("a pausing plan")
            .resume
            .notify_one();
    }

    pub fn calls(&self) -> usize {
        self.log.lock().expect("log lock").len()
    }

    /// Every counted call so far, as logged ("lake put <path>", "ledger claim <id>", ...).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// The failing call, once it has happened.
    pub fn failed_call(&self) -> Option<String> {
        let log = self.log.lock().expect("log lock");
        self.fail_at
            .checked_sub(1)
            .and_then(|i| log.get(i).cloned())
    }

    /// Decides one call: `op` is the operation ("put", "get", "claim", ...), `what` the call as
    /// logged.
    fn step(&self, op: &str, what: String) -> Step {
        let mut log = self.log.lock().expect("log lock");
        let fired = self.fail_at != 0 && log.len() >= self.fail_at;
        // A stopped process makes no call at all, counted or not.
        if fired && self.fault == Fault::Stop {
            return Step::Refuse;
        }
        let filter = self.only_writes_ending_with.as_str();
        let counted = filter.is_empty() || (op == "put" && what.ends_with(filter));
        if !counted {
            return Step::Run;
        }
        log.push(what);
        if log.len() != self.fail_at {
            return Step::Run;
        }
        match self.fault {
            Fault::Error | Fault::Stop => Step::Refuse,
            Fault::Timeout => Step::RunThenFail,
        }
    }

    fn message(&self) -> String {
        format!("injected {:?} at call {}", self.fault, self.fail_at)
    }

    /// Runs `call` as the plan decides; `fail` turns the plan's message into the port's error.
    async fn guard<T, E>(
        &self,
        (op, what): (&str, String),
        call: impl Future<Output = Result<T, E>>,
        fail: impl Fn(String) -> E,
    ) -> Result<T, E> {
        if let Some(pause) = &self.pause {
            let ours = op == "put" && what.ends_with(&pause.suffix);
            if ours && !pause.taken.swap(true, std::sync::atomic::Ordering::SeqCst) {
                pause.reached.notify_one();
                pause.resume.notified().await;
            }
        }
        match self.step(op, what) {
            Step::Run => call.await,
            Step::Refuse => Err(fail(self.message())),
            Step::RunThenFail => {
                call.await?;
                Err(fail(self.message()))
            }
        }
    }
}

fn storage_error(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: message.into(),
    }
}

/// An object store whose calls count toward a [`FaultPlan`], each part and the completion of a
/// multipart upload included.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<FaultPlan>,
    /// Which store this is, in the plan's log ("lake", "raw", ...).
    name: &'static str,
}

impl FaultyStore {
    pub fn wrap(
        inner: Arc<dyn ObjectStore>,
        plan: &Arc<FaultPlan>,
        name: &'static str,
    ) -> Arc<dyn ObjectStore> {
        Arc::new(Self {
            inner,
            plan: plan.clone(),
            name,
        })
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({}, {})", self.name, self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let call = self.inner.put_opts(location, payload, opts);
        let what = ("put", format!("{} put {location}", self.name));
        self.plan.guard(what, call, storage_error).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let call = self.inner.put_multipart_opts(location, opts);
        let what = ("put", format!("{} put_multipart {location}", self.name));
        let upload = self.plan.guard(what, call, storage_error).await?;
        Ok(Box::new(FaultyUpload {
            inner: upload,
            plan: self.plan.clone(),
            what: format!("{} upload {location}", self.name),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let call = self.inner.get_opts(location, options);
        let what = ("get", format!("{} get {location}", self.name));
        self.plan.guard(what, call, storage_error).await
    }

    /// Each path of a bulk delete is its own call: a process can stop between any two.
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (inner, plan, name) = (self.inner.clone(), self.plan.clone(), self.name);
        locations
            .then(move |location| {
                let (inner, plan) = (inner.clone(), plan.clone());
                async move {
                    let location = location?;
                    let what = ("delete", format!("{name} delete {location}"));
                    let call = async {
                        let once = stream::once(futures::future::ready(Ok(location.clone())));
                        inner
                            .delete_stream(once.boxed())
                            .next()
                            .await
                            .unwrap_or(Ok(location.clone()))
                    };
                    plan.guard(what, call, storage_error).await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let error = || {
            stream::once(futures::future::ready(Err(storage_error(
                self.plan.message(),
            ))))
        };
        let what = format!("{} list {}", self.name, prefix.map_or("", Path::as_ref));
        match self.plan.step("list", what) {
            Step::Run => self.inner.list(prefix),
            Step::Refuse => error().boxed(),
            Step::RunThenFail => self.inner.list(prefix).chain(error()).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let call = self.inner.list_with_delimiter(prefix);
        let what = (
            "list/",
            format!("{} list/ {}", self.name, prefix.map_or("", Path::as_ref)),
        );
        self.plan.guard(what, call, storage_error).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let call = self.inner.copy_opts(from, to, options);
        let what = ("copy", format!("{} copy {from} -> {to}", self.name));
        self.plan.guard(what, call, storage_error).await
    }
}

/// A multipart upload whose parts, completion and abort count toward a [`FaultPlan`].
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    plan: Arc<FaultPlan>,
    what: String,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let message = self.plan.message();
        let fail = move || Err(storage_error(message));
        match self.plan.step("put_part", format!("{} part", self.what)) {
            Step::Run => self.inner.put_part(data),
            Step::Refuse => Box::pin(futures::future::ready(fail())),
            Step::RunThenFail => {
                let part = self.inner.put_part(data);
                Box::pin(async move { part.await.and_then(|()| fail()) })
            }
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let what = ("complete", format!("{} complete", self.what));
        self.plan
            .guard(what, self.inner.complete(), storage_error)
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let what = ("abort", format!("{} abort", self.what));
        self.plan
            .guard(what, self.inner.abort(), storage_error)
            .await
    }
}

/// A ledger whose calls count toward a [`FaultPlan`].
pub struct FaultyLedger {
    inner: Arc<dyn Ledger>,
    plan: Arc<FaultPlan>,
}

impl FaultyLedger {
    pub fn wrap(inner: Arc<dyn Ledger>, plan: &Arc<FaultPlan>) -> Arc<dyn Ledger> {
        Arc::new(Self {
            inner,
            plan: plan.clone(),
        })
    }
}

#[async_trait]
impl Ledger for FaultyLedger {
    async fn claim(
        &self,
        object: &ObjectRef,
        tenant_id: &str,
        now: i64,
        lease: Duration,
    ) -> metriccare_core::Result<Claim> {
        let call = self.inner.claim(object, tenant_id, now, lease);
        let what = ("claim", format!("ledger claim {}", object.ledger_id()));
        self.plan.guard(what, call, CoreError::Ledger).await
    }

    async fn finish(
        &self,
        id: &str,
        attempt: u32,
        status: LedgerStatus,
        outcome: &Outcome,
        now: i64,
    ) -> metriccare_core::Result<bool> {
        let call = self.inner.finish(id, attempt, status, outcome, now);
        let what = ("finish", format!("ledger finish {id} {}", status.as_str()));
        self.plan.guard(what, call, CoreError::Ledger).await
    }

    async fn take_over(
        &self,
        id: &str,
        now: i64,
        lease: Duration,
    ) -> metriccare_core::Result<Claim> {
        let call = self.inner.take_over(id, now, lease);
        let what = ("take_over", format!("ledger take over {id}"));
        self.plan.guard(what, call, CoreError::Ledger).await
    }

    async fn get(&self, id: &str) -> metriccare_core::Result<Option<LedgerEntry>> {
        let call = self.inner.get(id);
        let what = ("get", format!("ledger get {id}"));
        self.plan.guard(what, call, CoreError::Ledger).await
    }

    async fn list(&self) -> metriccare_core::Result<Vec<LedgerEntry>> {
        let call = self.inner.list();
        self.plan
            .guard(("list", "ledger list".to_owned()), call, CoreError::Ledger)
            .await
    }
}

/// The lake at `dir` as seen by a process whose storage (lake, quarantine, raw) and ledger calls
/// count toward `plan`. Its claims expire at once, so the next process can take over whatever it
/// left unfinished.
pub fn faulty_process(dir: &FsPath, plan: &Arc<FaultPlan>) -> LocalLake {
    faulty_process_with(dir, plan, Settings::default())
}

/// [`faulty_process`] with these settings (retention, group limits); the lease expires at once.
pub fn faulty_process_with(dir: &FsPath, plan: &Arc<FaultPlan>, settings: Settings) -> LocalLake {
    let lake = crate::open_lake(dir, settings.clone());
    let ports = &lake.services;
    let services = Services::new(
        FaultyStore::wrap(ports.lake.clone(), plan, "lake"),
        FaultyStore::wrap(ports.quarantine.clone(), plan, "quarantine"),
        FaultyLedger::wrap(ports.ledger.clone(), plan),
        ports.notifier.clone(),
        crate::test_pseudonymizer(),
        Settings {
            lease: Duration::from_micros(1),
            ..settings
        },
    );
    LocalLake {
        services,
        raw: FaultyStore::wrap(lake.raw.clone(), plan, "raw"),
        ..lake
    }
}
