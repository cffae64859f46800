//! The ledger in a SQLite file. A claim is one conditional upsert, atomic across processes, so two
//! `metriccare` processes on the same lake never both process an object.
//!
//! Every SQLite call runs on Tokio's blocking pool, never on an async worker: a call may wait up to
//! the busy timeout for another process's write lock, and a worker stalled that long stalls every
//! task scheduled on it (functions/CONVENTIONS.md).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use metriccare_core::ports::{Claim, Ledger, LedgerEntry, LedgerStatus, ObjectRef, Outcome};
use metriccare_core::{CoreError, Result};
use rusqlite::{Connection, OptionalExtension, Row, params};

pub struct SqliteLedger {
    connection: Arc<Mutex<Connection>>,
}

fn ledger_error(e: rusqlite::Error) -> CoreError {
    CoreError::Ledger(format!("sqlite: {e}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    id              TEXT PRIMARY KEY,
    bucket          TEXT NOT NULL,
    object_key      TEXT NOT NULL,
    etag            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    tenant_id       TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    lease_until     INTEGER NOT NULL,
    counts          TEXT NOT NULL,
    deleted         INTEGER NOT NULL,
    rejected        INTEGER NOT NULL,
    silver_instants TEXT NOT NULL,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    handed_off_to   TEXT
);
CREATE INDEX IF NOT EXISTS ledger_by_update ON ledger (updated_at);
";

const COLUMNS: &str = "id, bucket, object_key, etag, size, tenant_id, status, attempts, lease_until, counts, \
                       deleted, rejected, silver_instants, error, created_at, updated_at, handed_off_to, \
                       future_last_updated, erased";

impl SqliteLedger {
    /// Opens (creating if needed) the ledger database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path).map_err(ledger_error)?;
        connection
            .busy_timeout(Duration::from_secs(30))
            .map_err(ledger_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(ledger_error)?;
        connection.execute_batch(SCHEMA).map_err(ledger_error)?;
        add_missing_columns(&connection).map_err(ledger_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection
                .lock()
                .map_err(|_| CoreError::Ledger("ledger connection poisoned".into()))?;
            f(&connection).map_err(ledger_error)
        })
        .await
        .map_err(|e| CoreError::Ledger(format!("sqlite call did not finish: {e}")))?
    }
}

/// Ledgers created before a column existed get it added (SQLite has no ADD COLUMN IF NOT EXISTS).
fn add_missing_columns(connection: &Connection) -> rusqlite::Result<()> {
    // Columns added after the first release, with their definitions: older ledgers gain them.
    for (column, definition) in [
        ("handed_off_to", "TEXT"),
        ("future_last_updated", "INTEGER NOT NULL DEFAULT 0"),
        ("erased", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        let has_column = connection
            .prepare("SELECT 1 FROM pragma_table_info('ledger') WHERE name = ?1")?
            .exists([column])?;
        if !has_column {
            connection.execute_batch(&format!(
                "ALTER TABLE ledger ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    Ok(())
}

fn entry(row: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    let json_column = |index: usize| -> rusqlite::Result<String> { row.get(index) };
    let status: String = row.get(6)?;
    Ok(LedgerEntry {
        id: row.get(0)?,
        object: ObjectRef {
            bucket: row.get(1)?,
            key: row.get(2)?,
            etag: row.get(3)?,
            size: row.get::<_, i64>(4)? as u64,
        },
        tenant_id: row.get(5)?,
        status: LedgerStatus::parse(&status).unwrap_or(LedgerStatus::Failed),
        attempts: row.get(7)?,
        lease_until: row.get(8)?,
        counts: serde_json::from_str(&json_column(9)?).unwrap_or_default(),
        deleted: row.get::<_, i64>(10)? as u64,
        rejected: row.get::<_, i64>(11)? as u64,
        silver_instants: serde_json::from_str(&json_column(12)?).unwrap_or_default(),
        error: row.get(13)?,
        created_at: row.get(14)?,
        updated_at: row.get(15)?,
        handed_off_to: row.get(16)?,
        future_last_updated: row.get::<_, i64>(17)? as u64,
        erased: row.get::<_, i64>(18)? as u64,
    })
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn claim(
        &self,
        object: &ObjectRef,
        tenant_id: &str,
        now: i64,
        lease: Duration,
    ) -> Result<Claim> {
        let id = object.ledger_id();
        let lease_until = now + lease.as_micros() as i64;
        let (object, tenant_id) = (object.clone(), tenant_id.to_owned());
        self.with(move |c| {
            // Insert, or take over a FAILED item or an expired PROCESSING lease; otherwise no row
            // changes and the existing item says why.
            let claimed = c.query_row(
                "INSERT INTO ledger (id, bucket, object_key, etag, size, tenant_id, status, attempts, lease_until,
                                     counts, deleted, rejected, silver_instants, error, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'PROCESSING', 1, ?7, '{}', 0, 0, '[]', NULL, ?8, ?8)
                 ON CONFLICT(id) DO UPDATE SET
                     status = 'PROCESSING', attempts = ledger.attempts + 1, lease_until = excluded.lease_until,
                     error = NULL, handed_off_to = NULL, updated_at = excluded.updated_at
                 WHERE ledger.status = 'FAILED'
                    OR (ledger.status = 'PROCESSING' AND ledger.lease_until < excluded.updated_at)
                 RETURNING attempts",
                params![id, object.bucket, object.key, object.etag, object.size as i64, tenant_id, lease_until, now],
                |row| row.get::<_, u32>(0),
            ).optional()?;
            if let Some(attempt) = claimed {
                return Ok(Claim::Claimed { attempt });
            }
            let current = c.query_row(&format!("SELECT {COLUMNS} FROM ledger WHERE id = ?1"), [&id], entry)?;
            Ok(Claim::refused_by(current))
        })
        .await
    }

    async fn finish(
        &self,
        id: &str,
        attempt: u32,
        status: LedgerStatus,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool> {
        let counts = serde_json::to_string(&outcome.counts)?;
        let instants = serde_json::to_string(&outcome.silver_instants)?;
        let (id, outcome) = (id.to_owned(), outcome.clone());
        let updated = self.with(move |c| {
            c.execute(
                "UPDATE ledger SET status = ?2, counts = ?3, deleted = ?4, rejected = ?5, silver_instants = ?6,
                                   error = ?7, lease_until = 0, updated_at = ?8, handed_off_to = ?10,
                                   future_last_updated = ?11, erased = ?12
                 WHERE id = ?1 AND status = 'PROCESSING' AND attempts = ?9",
                params![
                    id,
                    status.as_str(),
                    counts,
                    outcome.deleted as i64,
                    outcome.rejected as i64,
                    instants,
                    outcome.error,
                    now,
                    attempt,
                    outcome.handed_off_to,
                    outcome.future_last_updated as i64,
                    outcome.erased as i64
                ],
            )
        })
        .await?;
        Ok(updated == 1)
    }

    async fn take_over(&self, id: &str, now: i64, lease: Duration) -> Result<Claim> {
        let lease_until = now + lease.as_micros() as i64;
        let owned_id = id.to_owned();
        let taken = self.with(move |c| {
            let claimed = c
                .query_row(
                    "UPDATE ledger SET status = 'PROCESSING', attempts = attempts + 1, lease_until = ?2,
                                       updated_at = ?3
                     WHERE id = ?1 AND status = 'HANDED_OFF'
                     RETURNING attempts",
                    params![owned_id, lease_until, now],
                    |row| row.get::<_, u32>(0),
                )
                .optional()?;
            if let Some(attempt) = claimed {
                return Ok(Some(Claim::Claimed { attempt }));
            }
            c.query_row(
                &format!("SELECT {COLUMNS} FROM ledger WHERE id = ?1"),
                [&owned_id],
                entry,
            )
            .optional()
            .map(|current| current.map(Claim::refused_by))
        })
        .await?;
        taken.ok_or_else(|| CoreError::Ledger(format!("no ledger item {id}")))
    }

    async fn get(&self, id: &str) -> Result<Option<LedgerEntry>> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM ledger WHERE id = ?1"),
                [&id],
                entry,
            )
            .optional()
        })
        .await
    }

    async fn list(&self) -> Result<Vec<LedgerEntry>> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {COLUMNS} FROM ledger ORDER BY updated_at DESC, id"
            ))?;
            let rows = statement.query_map([], entry)?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(etag: &str) -> ObjectRef {
        ObjectRef {
            bucket: "raw".into(),
            key: "t1/a.ndjson".into(),
            etag: etag.into(),
            size: 10,
        }
    }

    const LEASE: Duration = Duration::from_secs(60);

    /// Claims the object of `etag` and records it handed off to run `jr_1`: its id and that outcome.
    async fn hand_off(ledger: &SqliteLedger, etag: &str) -> (String, Outcome) {
        let id = object(etag).ledger_id();
        ledger.claim(&object(etag), "t1", 0, LEASE).await.unwrap();
        let handed = Outcome {
            handed_off_to: Some("jr_1".into()),
            ..Outcome::default()
        };
        assert!(
            ledger
                .finish(&id, 1, LedgerStatus::HandedOff, &handed, 1)
                .await
                .unwrap()
        );
        (id, handed)
    }

    #[tokio::test]
    async fn a_completed_object_is_never_claimed_again() {
        // GIVEN a ledger with an object processed to completion
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("ledger.db")).unwrap();
        let id = object("e1").ledger_id();
        assert_eq!(
            ledger.claim(&object("e1"), "t1", 0, LEASE).await.unwrap(),
            Claim::Claimed { attempt: 1 }
        );
        let outcome = Outcome {
            rejected: 2,
            ..Outcome::default()
        };
        assert!(
            ledger
                .finish(&id, 1, LedgerStatus::Completed, &outcome, 5)
                .await
                .unwrap()
        );
        // WHEN the same version is delivered again, much later
        let again = ledger
            .claim(&object("e1"), "t1", 1_000_000_000_000, LEASE)
            .await
            .unwrap();
        // THEN it is done, with the recorded outcome; a new version is claimable
        let Claim::Done(entry) = again else {
            panic!("expected Done, got {again:?}")
        };
        assert_eq!((entry.status, entry.rejected), (LedgerStatus::Completed, 2));
        assert!(matches!(
            ledger.claim(&object("e2"), "t1", 0, LEASE).await.unwrap(),
            Claim::Claimed { .. }
        ));
    }

    #[tokio::test]
    async fn a_lease_blocks_until_it_expires_and_failures_are_retried() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("ledger.db")).unwrap();
        let lease_micros = LEASE.as_micros() as i64;
        assert!(matches!(
            ledger.claim(&object("e"), "t1", 0, LEASE).await.unwrap(),
            Claim::Claimed { .. }
        ));
        assert!(matches!(
            ledger
                .claim(&object("e"), "t1", lease_micros - 1, LEASE)
                .await
                .unwrap(),
            Claim::Busy(_)
        ));
        assert_eq!(
            ledger
                .claim(&object("e"), "t1", lease_micros + 1, LEASE)
                .await
                .unwrap(),
            Claim::Claimed { attempt: 2 }
        );
        let id = object("e").ledger_id();
        let failed = Outcome {
            error: Some("lake unreachable".into()),
            ..Outcome::default()
        };
        // The first worker, whose lease expired, can no longer record anything.
        assert!(
            !ledger
                .finish(&id, 1, LedgerStatus::Completed, &failed, 10)
                .await
                .unwrap()
        );
        assert!(
            ledger
                .finish(&id, 2, LedgerStatus::Failed, &failed, 10)
                .await
                .unwrap()
        );
        assert_eq!(
            ledger.claim(&object("e"), "t1", 11, LEASE).await.unwrap(),
            Claim::Claimed { attempt: 3 }
        );
        assert_eq!(ledger.get(&id).await.unwrap().unwrap().error, None);
    }

    #[tokio::test]
    async fn two_connections_never_both_claim() {
        // Two ledgers on one file behave like two processes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let (a, b) = (
            SqliteLedger::open(&path).unwrap(),
            SqliteLedger::open(&path).unwrap(),
        );
        let first = a.claim(&object("x"), "t1", 0, LEASE).await.unwrap();
        let second = b.claim(&object("x"), "t1", 0, LEASE).await.unwrap();
        assert!(matches!(first, Claim::Claimed { .. }));
        assert!(matches!(second, Claim::Busy(_)));
        assert_eq!(a.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_ledger_from_before_the_hand_off_column_is_upgraded_in_place() {
        // GIVEN a ledger file written by a version without `handed_off_to`, with one item
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        {
            let old = Connection::open(&path).unwrap();
            let old_schema = SCHEMA.replace(",\n    handed_off_to   TEXT", "");
            assert!(!old_schema.contains("handed_off_to"));
            old.execute_batch(&old_schema).unwrap();
            old.execute(
                "INSERT INTO ledger VALUES ('x', 'raw', 'k', 'e', 1, 't1', 'COMPLETED', 1, 0, '{}', 0, 0, '[]', NULL, 1, 2)",
                [],
            )
            .unwrap();
        }
        // WHEN it is opened, THEN the item reads back and new outcomes record their hand-off
        let ledger = SqliteLedger::open(&path).unwrap();
        let entry = ledger.get("x").await.unwrap().unwrap();
        assert_eq!(
            (entry.status, entry.handed_off_to),
            (LedgerStatus::Completed, None)
        );
        hand_off(&ledger, "e9").await;
        assert!(matches!(
            ledger.claim(&object("e9"), "t1", 2, LEASE).await.unwrap(),
            Claim::Done(entry) if entry.handed_off_to.as_deref() == Some("jr_1")
        ));
    }

    #[tokio::test]
    async fn a_handed_off_item_is_taken_over_once_and_only_then() {
        // GIVEN an item handed off to a scale-out run
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("ledger.db")).unwrap();
        let (id, handed) = hand_off(&ledger, "e").await;
        // WHEN the run takes it over, and a second run tries while the first holds it
        let first = ledger.take_over(&id, 2, LEASE).await.unwrap();
        let second = ledger.take_over(&id, 3, LEASE).await.unwrap();
        // THEN the first holds the next attempt, the second is refused, nothing else changed
        assert_eq!(first, Claim::Claimed { attempt: 2 });
        assert!(
            matches!(second, Claim::Busy(entry) if entry.handed_off_to.as_deref() == Some("jr_1"))
        );
        // AND once finished, the item is done for every later take-over; an unknown item is an error
        assert!(
            ledger
                .finish(&id, 2, LedgerStatus::Completed, &handed, 4)
                .await
                .unwrap()
        );
        assert!(matches!(
            ledger.take_over(&id, 5, LEASE).await.unwrap(),
            Claim::Done(_)
        ));
        assert!(ledger.take_over("nope", 5, LEASE).await.is_err());
    }
}
