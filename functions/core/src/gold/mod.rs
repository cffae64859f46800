//! Gold: the quality measures (crude, in the style of CMS and NHSN) per tenant, recomputed for every
//! tenant whose silver changed since the last refresh, kept in Hudi tables written by the same
//! writer as silver, and announced.
//!
//! Which tenants changed comes from the silver tables' commit sequence (the timeline in commit
//! order), read from the last refresh's watermark on; nothing is scanned that did not change. A
//! tenant's gold partition is replaced whole in one commit per gold table, so a reader never sees
//! half of a tenant's metrics, and no other tenant's rows are touched. A tenant is read as its
//! profile says (`crate::profile`); a changed profile recomputes the tenant, a refused one leaves
//! its gold as it is — unless the measure definitions changed, which empties it until the profile
//! is fixed (old and new figures never stand side by side).

pub mod metrics;
mod notify;
mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use metrics::{GoldRows, HaiCode, HaiValueSet, Headline, TenantSilver, compute};
pub use notify::message_for;
pub use tables::{
    GoldTable, ListedConditions, StayDetailComparison, gold_rows_from_batches, silver_columns_read,
    silver_rows_kept, tenant_silver_from_batches,
};

use crate::error::Result;
use crate::hudi::{HudiTable, Retention, StagedRows};
use crate::objects::{create, read};
use crate::ports::Notifier;
use crate::profile::{TenantProfile, load_profiles};
use crate::silver::SilverTable;
use crate::tenant::TenantId;
use crate::time::now_micros;

/// Where the refresh watermark lives: the last silver commit sequence folded into gold, per table,
/// and the tenants whose refresh is committed but not yet announced.
pub const STATE_PATH: &str = "_metriccare/gold/state.json";
/// One refresh at a time: two interleaved refreshes could commit a stale recompute over a fresh one.
pub const LOCK_PATH: &str = "_metriccare/gold/refresh.lock";
/// The version of the measure definitions `compute` implements: bumped when they change, so that
/// the next refresh recomputes every tenant (2: top-level stays, local dates, codes by system; 2.1:
/// episodes, index exclusions, HAI verification and repeats, open windows, the version column).
const MEASURE_DEFINITIONS: &str = "measures-2.1";
/// The profile fingerprint recorded for a tenant whose profile was refused.
const REFUSED: &str = "refused";
/// How long a refresh lock holds before another refresh may take it over (its holder died).
const LOCK_LEASE_MICROS: i64 = 15 * 60 * 1_000_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    silver_sequences: BTreeMap<String, u64>,
    /// Tenants whose gold was committed by a refresh that stopped before announcing it.
    #[serde(default)]
    unannounced: Vec<String>,
    /// The fingerprint of the profile each tenant's gold was computed with (none: defaults).
    #[serde(default)]
    profiles: BTreeMap<String, String>,
    /// The measure definitions and the deployment's defaults gold was computed with: when either
    /// changes (a new release, another `METRICCARE_HAI_VALUE_SET`), every tenant is recomputed.
    #[serde(default)]
    definitions: String,
}

/// What one tenant's refresh produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRefresh {
    pub tenant_id: String,
    pub rows: RowCounts,
    pub headline: Headline,
    /// The headline before this refresh (`None` on the first).
    pub previous: Option<Headline>,
}

/// A tenant's rows in each gold table. A refresh keeps these, not the rows: a million stays'
/// `stay_detail` rows are dropped once staged, before the commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub hospital_monthly: usize,
    pub hai_by_code: usize,
    pub mortality_yearly: usize,
    pub stay_detail: usize,
}

impl RowCounts {
    fn of(rows: &GoldRows) -> Self {
        Self {
            hospital_monthly: rows.hospital_monthly.len(),
            hai_by_code: rows.hai_by_code.len(),
            mortality_yearly: rows.mortality_yearly.len(),
            stay_detail: rows.stay_detail.len(),
        }
    }
}

/// What a refresh did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshReport {
    /// Another refresh holds the lock: this one did nothing.
    pub busy: bool,
    /// Tenants whose silver or profile changed since the last refresh.
    pub changed_tenants: Vec<String>,
    /// Tenants left as they were because their profile is refused: why, naming the key.
    pub profile_errors: BTreeMap<String, String>,
    /// Tenants whose gold changed (the others recomputed to the same numbers).
    pub refreshed: Vec<TenantRefresh>,
    /// Silver commit sequence per table that this refresh has folded in.
    pub silver_sequences: BTreeMap<String, u64>,
    /// `table@instant` of each gold commit.
    pub gold_instants: Vec<String>,
}

/// Recomputes gold for every tenant whose silver changed since the last refresh and publishes one
/// `gold.refreshed` message per tenant whose gold changed (at least once: a refresh that stops after
/// committing is announced by the next). Nothing new: nothing written, no message.
pub async fn refresh(
    lake: &Arc<dyn ObjectStore>,
    notifier: &dyn Notifier,
    defaults: &TenantProfile,
    retention: &Retention,
) -> Result<RefreshReport> {
    let Some(lock) = acquire_lock(lake).await? else {
        tracing::info!("another gold refresh is running");
        return Ok(RefreshReport {
            busy: true,
            ..RefreshReport::default()
        });
    };
    let result = refresh_locked(lake, notifier, defaults, retention).await;
    let released = release_lock(lake, &lock).await;
    let report = result?;
    released?;
    Ok(report)
}

/// Deletes the lock if it is still this refresh's: one that outlived its lease may have been taken
/// over, and deleting the new holder's lock would let a third refresh run beside it.
async fn release_lock(lake: &Arc<dyn ObjectStore>, lock: &str) -> Result<()> {
    let path = Path::from(LOCK_PATH);
    match read(lake.as_ref(), &path).await? {
        Some(held) if held == lock.as_bytes() => Ok(lake.delete(&path).await?),
        Some(_) => {
            tracing::warn!("the gold refresh lock was taken over while this refresh ran");
            Ok(())
        }
        None => Ok(()),
    }
}

async fn refresh_locked(
    lake: &Arc<dyn ObjectStore>,
    notifier: &dyn Notifier,
    defaults: &TenantProfile,
    retention: &Retention,
) -> Result<RefreshReport> {
    let mut state = load_state(lake).await?;
    let definitions = format!("{MEASURE_DEFINITIONS}:{}", defaults.effective_fingerprint());
    let definitions_changed = state.definitions != definitions;
    // Gold committed but not announced under other definitions is not read (its columns may be
    // another release's): this refresh recomputes and announces every tenant anyway.
    if !state.unannounced.is_empty() && !definitions_changed {
        announce_committed(lake, notifier, &state).await?;
        state.unannounced.clear();
        save_state(lake, &state).await?;
    }
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut sequences = BTreeMap::new();
    let mut silver = BTreeMap::new();
    for table in SilverTable::ALL {
        let hudi = HudiTable::open(lake.clone(), table.def()).await?;
        let mut since = state
            .silver_sequences
            .get(table.name())
            .copied()
            .unwrap_or(0);
        if since > hudi.latest_sequence().await? {
            // The silver table was rebuilt under a kept watermark: everything is new again.
            since = 0;
        }
        let (latest, partitions) = match hudi.changes_since(since).await? {
            (latest, Some(partitions)) => (latest, partitions),
            // This refresh fell behind the kept commit history: every tenant may have changed.
            (latest, None) => (
                latest,
                crate::hudi::list_partitions(lake.as_ref(), hudi.def())
                    .await?
                    .into_iter()
                    .collect(),
            ),
        };
        changed.extend(
            partitions
                .iter()
                .filter_map(|p| p.strip_prefix("tenant_id=").map(str::to_owned)),
        );
        sequences.insert(table.name().to_owned(), latest);
        silver.insert(table, hudi);
    }
    if definitions_changed {
        // Every tenant with silver or gold: gold of a tenant whose silver is gone is rewritten too.
        let defs = silver
            .values()
            .map(|hudi| hudi.def().clone())
            .chain(GoldTable::ALL.iter().map(|table| table.def()));
        for def in defs.collect::<Vec<_>>() {
            let partitions = crate::hudi::list_partitions(lake.as_ref(), &def).await?;
            changed.extend(
                partitions
                    .iter()
                    .filter_map(|p| p.strip_prefix("tenant_id=").map(str::to_owned)),
            );
        }
    }
    // Profiles: a tenant whose profile was added, changed or removed is recomputed; one whose
    // profile is refused is left as it is (and recomputed once it is fixed: its recorded
    // fingerprint is kept).
    let mut profiles = load_profiles(lake.as_ref(), defaults).await?;
    let fingerprints: BTreeSet<&String> = state.profiles.keys().chain(profiles.keys()).collect();
    for tenant in fingerprints {
        let now = profiles
            .get(tenant)
            .map(|p| p.as_ref().map_or(REFUSED, |p| p.fingerprint.as_str()));
        if now != state.profiles.get(tenant).map(String::as_str) {
            changed.insert(tenant.clone());
        }
    }
    let mut report = RefreshReport {
        silver_sequences: sequences.clone(),
        ..RefreshReport::default()
    };
    for (tenant, profile) in &profiles {
        if let Err(e) = profile {
            tracing::error!(tenant_id = %tenant, error = %e, "tenant profile refused: its gold is left as it is");
            report.profile_errors.insert(tenant.clone(), e.to_string());
            // Whatever comes next (a fixed profile, none) differs from this: the tenant is then
            // recomputed, silver changes folded in meanwhile included.
            state.profiles.insert(tenant.clone(), REFUSED.to_owned());
        }
    }
    changed.retain(|tenant| !report.profile_errors.contains_key(tenant));
    // A refused profile leaves the tenant's gold as it is, unless the definitions changed: figures
    // (and columns) of the old definitions must not stay beside the new ones, so that tenant's gold
    // is emptied until its profile is fixed.
    let emptied: BTreeSet<String> = if definitions_changed {
        report.profile_errors.keys().cloned().collect()
    } else {
        BTreeSet::new()
    };
    changed.extend(emptied.iter().cloned());
    report.changed_tenants = changed.iter().cloned().collect();
    if changed.is_empty() {
        return Ok(report);
    }

    let mut gold = BTreeMap::new();
    for table in GoldTable::ALL {
        gold.insert(table, HudiTable::open(lake.clone(), table.def()).await?);
    }
    let mut staged: BTreeMap<GoldTable, StagedRows> = gold
        .iter()
        .map(|(t, h)| (*t, StagedRows::new(h.def())))
        .collect();
    let refreshed_at = now_micros();
    let mut computed_with: BTreeMap<String, String> = BTreeMap::new();
    for tenant in &changed {
        let partition = TenantId::parse(tenant)?.partition_path();
        let rows = if emptied.contains(tenant) {
            tracing::error!(tenant_id = %tenant, "gold emptied: the measure definitions changed while the tenant's profile is refused");
            GoldRows::default()
        } else {
            let profile = match profiles.remove(tenant) {
                Some(Ok(profile)) => profile,
                _ => defaults.clone(),
            };
            // Recorded with the watermark, once gold is committed: a refresh that fails before
            // leaves the profile change for the next one to see.
            computed_with.insert(tenant.clone(), profile.fingerprint.clone());
            let started = Instant::now();
            // Silver is read a batch at a time and only what the measures read is kept: the
            // conditions that may be infections (reduced), the patients with a death date, the
            // encounters that are stays or part of another. Held whole, a million stays' silver
            // columns were most of the refresh's peak.
            let condition = SilverTable::Condition;
            let mut listed = ListedConditions::new(&profile.hai);
            silver[&condition]
                .snapshot(Some(std::slice::from_ref(&partition)))
                .await?
                .read_each(
                    lake.as_ref(),
                    Some(&partition),
                    Some(silver_columns_read(condition)),
                    |batch| listed.add(&batch),
                )
                .await?;
            let infections = listed.into_infections();
            let conditions_at = Instant::now();
            let others: Vec<_> = silver.iter().filter(|(t, _)| **t != condition).collect();
            let batches = read_partition(
                lake,
                others,
                &partition,
                |t| Some(silver_columns_read(t)),
                |t, batch| silver_rows_kept(t, batch, &profile),
            )
            .await?;
            let read_at = Instant::now();
            let (rows, facts_at) = crate::blocking::in_place(|| -> Result<_> {
                let silver = tenant_silver_from_batches(&batches, infections, &profile)?;
                let facts_at = Instant::now();
                Ok((compute(&silver, &profile, refreshed_at), facts_at))
            })?;
            tracing::info!(
                tenant_id = %tenant,
                stays = rows.stay_detail.len(),
                conditions_ms = millis(conditions_at - started),
                read_ms = millis(read_at - conditions_at),
                facts_ms = millis(facts_at - read_at),
                compute_ms = millis(facts_at.elapsed()),
                "gold computed"
            );
            rows
        };
        let started = Instant::now();
        // Gold of other definitions is not compared (nor read: its columns may differ). The
        // previous sums are read whole (a few rows per hospital and month); the previous stay
        // detail only when the sums are the same, and a batch at a time.
        let (previous, unchanged) = if definitions_changed {
            (GoldRows::default(), false)
        } else {
            let sums: Vec<_> = gold
                .iter()
                .filter(|(t, _)| GoldTable::SUMS.contains(t))
                .collect();
            let previous = gold_rows_from_batches(
                &read_partition(lake, sums, &partition, |_| None, |_, batch| Ok(batch)).await?,
            )?;
            let unchanged = previous.same_sums(&rows)
                && same_stay_detail(lake, &gold[&GoldTable::StayDetail], &partition, &rows).await?;
            (previous, unchanged)
        };
        if unchanged {
            tracing::info!(tenant_id = %tenant, compare_ms = millis(started.elapsed()), "gold unchanged");
            continue;
        }
        let compared_at = Instant::now();
        for (table, stage) in staged.iter_mut() {
            stage.replace_partition(tenant);
            for batch in table.batches(tenant, &rows, refreshed_at)? {
                stage.push(tenant, &batch)?;
            }
        }
        tracing::info!(
            tenant_id = %tenant,
            compare_ms = millis(compared_at - started),
            stage_ms = millis(compared_at.elapsed()),
            "gold staged"
        );
        let had_gold =
            !previous.hospital_monthly.is_empty() || !previous.mortality_yearly.is_empty();
        report.refreshed.push(TenantRefresh {
            tenant_id: tenant.clone(),
            headline: rows.headline(),
            previous: had_gold.then(|| previous.headline()),
            rows: RowCounts::of(&rows),
        });
    }
    if !report.refreshed.is_empty() {
        // Recorded before committing, so a refresh that stops half-way is announced by the next.
        state.unannounced = report
            .refreshed
            .iter()
            .map(|t| t.tenant_id.clone())
            .collect();
        save_state(lake, &state).await?;
        for (table, hudi) in &gold {
            let stage = staged.get_mut(table).expect("staged per gold table");
            let started = Instant::now();
            let outcome = hudi.commit_staged(stage).await?;
            tracing::info!(
                table = table.name(),
                commit_ms = millis(started.elapsed()),
                "gold committed"
            );
            if let Some(instant) = outcome.instant {
                report
                    .gold_instants
                    .push(format!("{}@{instant}", table.name()));
            }
            // The commit stands whatever happens next: a services failure is the next run's work.
            if let Err(e) = hudi
                .run_services(&outcome.partitions, outcome.sequence, retention)
                .await
            {
                tracing::warn!(table = table.name(), error = %e, "table services failed; the next commit retries them");
            }
        }
        for tenant in &report.refreshed {
            notifier.publish(&message_for(tenant, &report)).await?;
        }
    }
    state.silver_sequences = sequences;
    state.unannounced.clear();
    state.definitions = definitions;
    for (tenant, fingerprint) in computed_with {
        if fingerprint.is_empty() {
            state.profiles.remove(&tenant);
        } else {
            state.profiles.insert(tenant, fingerprint);
        }
    }
    save_state(lake, &state).await?;
    Ok(report)
}

/// A phase's duration for the logs.
fn millis(elapsed: Duration) -> u64 {
    elapsed.as_millis().try_into().unwrap_or(u64::MAX)
}

/// Reads one partition of a table's latest snapshot, only `columns` (`None`: all).
/// Whether `rows.stay_detail` is what the partition's `stay_detail` holds now.
async fn same_stay_detail(
    lake: &Arc<dyn ObjectStore>,
    hudi: &HudiTable,
    partition: &str,
    rows: &GoldRows,
) -> Result<bool> {
    let mut comparison = StayDetailComparison::new(&rows.stay_detail);
    hudi.snapshot(Some(&[partition.to_owned()]))
        .await?
        .read_each(lake.as_ref(), Some(partition), None, |batch| {
            comparison.add(&batch)
        })
        .await?;
    Ok(comparison.same())
}

/// One partition of each table's latest snapshot: the columns `columns` names for it (`None`:
/// all), and of each batch as it is read, the rows `keep` keeps.
async fn read_partition<'t, T: Copy + Ord + 't>(
    lake: &Arc<dyn ObjectStore>,
    tables: impl IntoIterator<Item = (&'t T, &'t HudiTable)>,
    partition: &str,
    columns: impl Fn(T) -> Option<&'static [&'static str]>,
    keep: impl Fn(T, RecordBatch) -> Result<RecordBatch>,
) -> Result<BTreeMap<T, Vec<RecordBatch>>> {
    let mut batches = BTreeMap::new();
    for (&table, hudi) in tables {
        let snapshot = hudi.snapshot(Some(&[partition.to_owned()])).await?;
        let mut kept = Vec::new();
        snapshot
            .read_each(lake.as_ref(), Some(partition), columns(table), |batch| {
                let batch = keep(table, batch)?;
                if batch.num_rows() > 0 {
                    kept.push(batch);
                }
                Ok(())
            })
            .await?;
        batches.insert(table, kept);
    }
    Ok(batches)
}

/// Announces tenants whose gold an earlier refresh committed without announcing it, from the gold
/// that is there now (the previous figures are no longer known).
async fn announce_committed(
    lake: &Arc<dyn ObjectStore>,
    notifier: &dyn Notifier,
    state: &State,
) -> Result<()> {
    let mut gold = read_gold(lake).await?;
    let report = RefreshReport {
        silver_sequences: state.silver_sequences.clone(),
        ..RefreshReport::default()
    };
    for tenant in &state.unannounced {
        let rows = gold.remove(tenant).unwrap_or_default();
        let refresh = TenantRefresh {
            tenant_id: tenant.clone(),
            headline: rows.headline(),
            previous: None,
            rows: RowCounts::of(&rows),
        };
        notifier.publish(&message_for(&refresh, &report)).await?;
    }
    Ok(())
}

/// Takes the refresh lock (create-if-absent), or an expired one over; `false` when it is held.
/// Takes the refresh lock; returns the lock's content (to release only this lock), or `None` when
/// another refresh holds it.
async fn acquire_lock(lake: &Arc<dyn ObjectStore>) -> Result<Option<String>> {
    let path = Path::from(LOCK_PATH);
    let now = now_micros();
    let body = serde_json::json!({"expires_at": now + LOCK_LEASE_MICROS}).to_string();
    let taken = if create(lake.as_ref(), &path, PutPayload::from(body.clone())).await? {
        true
    } else {
        match read(lake.as_ref(), &path).await? {
            // Released meanwhile: try once more.
            None => create(lake.as_ref(), &path, PutPayload::from(body.clone())).await?,
            Some(held) if expires_at(&held) > now => false,
            Some(held) => take_over(lake, held, &body, now).await?,
        }
    };
    Ok(taken.then_some(body))
}

/// Takes over the expired lock whose content is `held`. Of the refreshes that found it expired,
/// the one that creates its takeover marker (named after that content, holding the new lock) wins
/// and writes the lock; deleting and re-creating the lock instead would let a second refresh
/// delete the first one's fresh lock. A marker whose own lease has passed means its taker stopped
/// before writing the lock: it is taken over the same way. Markers stay: one small object per
/// takeover of a dead refresh's lock.
async fn take_over(
    lake: &Arc<dyn ObjectStore>,
    mut held: bytes::Bytes,
    body: &str,
    now: i64,
) -> Result<bool> {
    loop {
        let marker = Path::from(format!("{LOCK_PATH}.taken-{}", takeover_token(&held)));
        if create(lake.as_ref(), &marker, PutPayload::from(body.to_owned())).await? {
            tracing::warn!("took over an expired gold refresh lock");
            lake.put(&Path::from(LOCK_PATH), PutPayload::from(body.to_owned()))
                .await?;
            return Ok(true);
        }
        match read(lake.as_ref(), &marker).await? {
            Some(taken) if expires_at(&taken) <= now => held = taken,
            _ => return Ok(false),
        }
    }
}

/// A lock's expiry; an unreadable lock has expired.
fn expires_at(lock: &[u8]) -> i64 {
    serde_json::from_slice::<serde_json::Value>(lock)
        .ok()
        .and_then(|lock| lock["expires_at"].as_i64())
        .unwrap_or(i64::MIN)
}

/// Names an expired lock by its content (its expiry, to the microsecond).
fn takeover_token(lock: &[u8]) -> String {
    hex::encode(&Sha256::digest(lock)[..8])
}

async fn load_state(lake: &Arc<dyn ObjectStore>) -> Result<State> {
    match read(lake.as_ref(), &Path::from(STATE_PATH)).await? {
        Some(text) => Ok(serde_json::from_slice(&text)?),
        None => Ok(State::default()),
    }
}

async fn save_state(lake: &Arc<dyn ObjectStore>, state: &State) -> Result<()> {
    let text = serde_json::to_vec_pretty(state)?;
    lake.put(&Path::from(STATE_PATH), PutPayload::from(text))
        .await?;
    Ok(())
}

/// The current gold rows of every tenant that has any, read from the latest gold snapshots.
pub async fn read_gold(lake: &Arc<dyn ObjectStore>) -> Result<BTreeMap<String, GoldRows>> {
    read_gold_tables(lake, &GoldTable::ALL).await
}

/// [`read_gold`] of some gold tables only (the others' rows left empty): a summary needs no
/// stay detail, a row per stay.
pub async fn read_gold_tables(
    lake: &Arc<dyn ObjectStore>,
    tables: &[GoldTable],
) -> Result<BTreeMap<String, GoldRows>> {
    let mut by_tenant: BTreeMap<String, BTreeMap<GoldTable, Vec<RecordBatch>>> = BTreeMap::new();
    for &table in tables {
        let hudi = HudiTable::open(lake.clone(), table.def()).await?;
        let snapshot = hudi.snapshot(None).await?;
        for slice in snapshot.slices.values() {
            let tenant = slice
                .partition
                .strip_prefix("tenant_id=")
                .unwrap_or(&slice.partition)
                .to_owned();
            let batches =
                crate::hudi::read_base_file(lake.as_ref(), &slice.path, None, &snapshot.schema)
                    .await?;
            by_tenant
                .entry(tenant)
                .or_default()
                .entry(table)
                .or_default()
                .extend(batches);
        }
    }
    by_tenant
        .into_iter()
        .map(|(tenant, batches)| Ok((tenant, gold_rows_from_batches(&batches)?)))
        .filter(|r: &Result<(String, GoldRows)>| {
            r.as_ref().map_or(true, |(_, rows)| {
                !rows.hospital_monthly.is_empty() || !rows.mortality_yearly.is_empty()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn lock(expires_at: i64) -> String {
        serde_json::json!({ "expires_at": expires_at }).to_string()
    }

    async fn held(lake: &Arc<dyn ObjectStore>) -> String {
        let found = read(lake.as_ref(), &Path::from(LOCK_PATH))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(found.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn of_two_refreshes_that_found_one_expired_lock_only_one_takes_it_over() {
        // GIVEN a lock left by a refresh that died long ago, read by two refreshes
        let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let expired = bytes::Bytes::from(lock(1));
        lake.put(&Path::from(LOCK_PATH), PutPayload::from(expired.clone()))
            .await
            .unwrap();
        // WHEN they take it over one after the other
        let first = take_over(&lake, expired.clone(), &lock(1_000), 10).await;
        let second = take_over(&lake, expired.clone(), &lock(2_000), 20).await;
        // THEN only the first holds it, and its lock is not replaced
        assert!(first.unwrap());
        assert!(!second.unwrap());
        assert_eq!(held(&lake).await, lock(1_000));
        // AND once that lock has expired too, it is taken over in turn
        let next = bytes::Bytes::from(lock(1_000));
        assert!(take_over(&lake, next, &lock(3_000), 2_000).await.unwrap());
        assert_eq!(held(&lake).await, lock(3_000));
    }

    #[tokio::test]
    async fn a_taker_that_stopped_before_writing_the_lock_is_taken_over_after_its_lease() {
        // GIVEN an expired lock whose taker created its marker (lease until 1,000), then stopped
        let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let expired = bytes::Bytes::from(lock(1));
        let marker = Path::from(format!("{LOCK_PATH}.taken-{}", takeover_token(&expired)));
        lake.put(&Path::from(LOCK_PATH), PutPayload::from(expired.clone()))
            .await
            .unwrap();
        lake.put(&marker, PutPayload::from(lock(1_000)))
            .await
            .unwrap();
        // WHEN another refresh finds the lock expired: within the taker's lease it waits
        assert!(
            !take_over(&lake, expired.clone(), &lock(1_500), 500)
                .await
                .unwrap()
        );
        // THEN after it, it takes the lock over
        assert!(
            take_over(&lake, expired, &lock(3_000), 2_000)
                .await
                .unwrap()
        );
        assert_eq!(held(&lake).await, lock(3_000));
    }

    #[tokio::test]
    async fn a_live_lock_is_not_taken_an_expired_one_is_and_only_the_holder_releases_it() {
        let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let first = acquire_lock(&lake).await.unwrap().unwrap();
        assert!(
            acquire_lock(&lake).await.unwrap().is_none(),
            "held within its lease"
        );
        // The first refresh outlives its lease and is taken over.
        let path = Path::from(LOCK_PATH);
        lake.put(&path, PutPayload::from(lock(1))).await.unwrap();
        let second = acquire_lock(&lake).await.unwrap().unwrap();
        assert!(acquire_lock(&lake).await.unwrap().is_none(), "held again");
        // Its release leaves the new holder's lock alone; the new holder's release frees it.
        release_lock(&lake, &first).await.unwrap();
        assert_eq!(held(&lake).await, second);
        release_lock(&lake, &second).await.unwrap();
        assert!(read(lake.as_ref(), &path).await.unwrap().is_none());
    }
}
