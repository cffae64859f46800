//! Fault injection: wrappers around the storage and ledger ports that count every call and make the
//! N-th one fail as an error, a timeout or the process stopping.

use std::fmt;
use std::future::Future;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
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

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::Error, Fault::Timeout, Fault::Stop];
}

/// Counts the calls of every port it wraps and decides which one fails.
#[derive(Debug)]
pub struct FaultPlan {
    fault: Fault,
    /// The call (from 1) that fails; 0 never fails.
    fail_at: usize,
    /// Only calls whose description ends with this count (a file name, say); empty: every call.
    only_ending_with: String,
    calls: AtomicUsize,
    /// What each call was, to name the failing one in assertion messages.
    log: Mutex<Vec<String>>,
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
        Self::failing_where(fault, at, "")
    }

    /// A plan that counts only the calls whose description ("lake put <path>", "ledger claim <id>")
    /// ends with `suffix`, and fails the `at`-th of them as `fault`.
    pub fn failing_where(fault: Fault, at: usize, suffix: &str) -> Arc<Self> {
        Arc::new(Self {
            fault,
            fail_at: at,
            only_ending_with: suffix.to_owned(),
            calls: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The failing call, as "port operation path", once it has happened.
    pub fn failed_call(&self) -> Option<String> {
        let log = self.log.lock().expect("log lock");
        self.fail_at
            .checked_sub(1)
            .and_then(|i| log.get(i).cloned())
    }

    fn step(&self, what: String) -> Step {
        if !what.ends_with(&self.only_ending_with) {
            return Step::Run;
        }
        self.log.lock().expect("log lock").push(what);
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_at == 0 || n < self.fail_at {
            return Step::Run;
        }
        match (self.fault, n == self.fail_at) {
            (Fault::Stop, _) | (Fault::Error, true) => Step::Refuse,
            (Fault::Timeout, true) => Step::RunThenFail,
            (_, false) => Step::Run,
        }
    }

    fn message(&self) -> String {
        format!("injected {:?} at call {}", self.fault, self.fail_at)
    }

    /// Runs `call` as the plan decides; `fail` turns the plan's message into the port's error.
    async fn guard<T, E>(
        &self,
        what: String,
        call: impl Future<Output = Result<T, E>>,
        fail: impl Fn(String) -> E,
    ) -> Result<T, E> {
        match self.step(what) {
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

/// An object store whose calls count toward a [`FaultPlan`]. Multipart parts are not counted: the
/// fault runs use files far below the multipart threshold.
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
        let what = format!("{} put {location}", self.name);
        self.plan.guard(what, call, storage_error).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let call = self.inner.put_multipart_opts(location, opts);
        let what = format!("{} put_multipart {location}", self.name);
        self.plan.guard(what, call, storage_error).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let call = self.inner.get_opts(location, options);
        let what = format!("{} get {location}", self.name);
        self.plan.guard(what, call, storage_error).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let message = self.plan.message();
        let fail = move |_| Err(storage_error(message.clone()));
        match self.plan.step(format!("{} delete", self.name)) {
            Step::Run => self.inner.delete_stream(locations),
            Step::Refuse => locations.map(fail).boxed(),
            Step::RunThenFail => self.inner.delete_stream(locations).map(fail).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let error = || {
            stream::once(futures::future::ready(Err(storage_error(
                self.plan.message(),
            ))))
        };
        let what = format!("{} list {}", self.name, prefix.map_or("", Path::as_ref));
        match self.plan.step(what) {
            Step::Run => self.inner.list(prefix),
            Step::Refuse => error().boxed(),
            Step::RunThenFail => self.inner.list(prefix).chain(error()).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let call = self.inner.list_with_delimiter(prefix);
        let what = format!("{} list/ {}", self.name, prefix.map_or("", Path::as_ref));
        self.plan.guard(what, call, storage_error).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let call = self.inner.copy_opts(from, to, options);
        let what = format!("{} copy {from} -> {to}", self.name);
        self.plan.guard(what, call, storage_error).await
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
        let what = format!("ledger claim {}", object.ledger_id());
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
        let what = format!("ledger finish {id} {}", status.as_str());
        self.plan.guard(what, call, CoreError::Ledger).await
    }

    async fn get(&self, id: &str) -> metriccare_core::Result<Option<LedgerEntry>> {
        let call = self.inner.get(id);
        let what = format!("ledger get {id}");
        self.plan.guard(what, call, CoreError::Ledger).await
    }

    async fn list(&self) -> metriccare_core::Result<Vec<LedgerEntry>> {
        let call = self.inner.list();
        self.plan
            .guard("ledger list".to_owned(), call, CoreError::Ledger)
            .await
    }
}

/// The lake at `dir` as seen by a process whose storage (lake, quarantine, raw) and ledger calls
/// count toward `plan`. Its claims expire at once, so the next process can take over whatever it
/// left unfinished.
pub fn faulty_process(dir: &FsPath, plan: &Arc<FaultPlan>) -> LocalLake {
    let lake = crate::open_lake(dir, Settings::default());
    let ports = &lake.services;
    let services = Services::new(
        FaultyStore::wrap(ports.lake.clone(), plan, "lake"),
        FaultyStore::wrap(ports.quarantine.clone(), plan, "quarantine"),
        FaultyLedger::wrap(ports.ledger.clone(), plan),
        ports.notifier.clone(),
        crate::test_pseudonymizer(),
        Settings {
            lease: Duration::from_micros(1),
            ..Settings::default()
        },
    );
    LocalLake {
        services,
        raw: FaultyStore::wrap(lake.raw.clone(), plan, "raw"),
        ..lake
    }
}
