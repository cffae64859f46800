//! Gold: the CMS quality metrics per tenant, recomputed for every tenant whose silver changed since
//! the last refresh, kept in Hudi tables written by the same writer as silver, and announced.
//!
//! Which tenants changed comes from the silver tables' commit sequence (the timeline in commit
//! order), read from the last refresh's watermark on; nothing is scanned that did not change. A
//! tenant's gold partition is replaced whole in one commit per gold table, so a reader never sees
//! half of a tenant's metrics, and no other tenant's rows are touched.

pub mod metrics;
mod notify;
mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

pub use metrics::{GoldRows, HaiValueSet, Headline, TenantSilver, compute};
pub use notify::{message_for, suppress};
pub use tables::{GoldTable, gold_rows_from_batches, tenant_silver_from_batches};

use crate::error::Result;
use crate::hudi::{HudiTable, StagedRows};
use crate::ports::Notifier;
use crate::silver::SilverTable;
use crate::tenant::TenantId;
use crate::time::now_micros;

/// Where the refresh watermark lives: the last silver commit sequence folded into gold, per table.
pub const STATE_PATH: &str = "_metriccare/gold/state.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    silver_sequences: BTreeMap<String, u64>,
}

/// What one tenant's refresh produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRefresh {
    pub tenant_id: String,
    pub rows: GoldRows,
    pub headline: Headline,
    /// The headline before this refresh (`None` on the first).
    pub previous: Option<Headline>,
}

/// What a refresh did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshReport {
    /// Tenants whose silver changed since the last refresh.
    pub changed_tenants: Vec<String>,
    /// Tenants whose gold changed (the others recomputed to the same numbers).
    pub refreshed: Vec<TenantRefresh>,
    /// Silver commit sequence per table that this refresh has folded in.
    pub silver_sequences: BTreeMap<String, u64>,
    /// `table@instant` of each gold commit.
    pub gold_instants: Vec<String>,
}

/// Recomputes gold for every tenant whose silver changed since the last refresh and publishes one
/// `gold.refreshed` message per tenant whose gold changed. Nothing new: nothing written, no message.
pub async fn refresh(
    lake: &Arc<dyn ObjectStore>,
    notifier: &dyn Notifier,
    value_set: &HaiValueSet,
) -> Result<RefreshReport> {
    let mut state = load_state(lake).await?;
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut silver = BTreeMap::new();
    for table in SilverTable::ALL {
        let hudi = HudiTable::open(lake.clone(), table.def()).await?;
        let since = state
            .silver_sequences
            .get(table.name())
            .copied()
            .unwrap_or(0);
        let (latest, partitions) = hudi.changes_since(since).await?;
        changed.extend(
            partitions
                .iter()
                .filter_map(|p| p.strip_prefix("tenant_id=").map(str::to_owned)),
        );
        state
            .silver_sequences
            .insert(table.name().to_owned(), latest);
        silver.insert(table, hudi);
    }
    let mut report = RefreshReport {
        changed_tenants: changed.iter().cloned().collect(),
        silver_sequences: state.silver_sequences.clone(),
        ..RefreshReport::default()
    };
    if changed.is_empty() {
        return Ok(report);
    }

    let gold: Vec<(GoldTable, HudiTable)> =
        futures::future::try_join_all(GoldTable::ALL.map(|t| async move {
            Ok::<_, crate::CoreError>((t, HudiTable::open(lake.clone(), t.def()).await?))
        }))
        .await?;
    let mut staged: BTreeMap<GoldTable, StagedRows> = gold
        .iter()
        .map(|(t, h)| (*t, StagedRows::new(h.def())))
        .collect();
    let refreshed_at = now_micros();
    for tenant in &changed {
        let tenant_id = TenantId::parse(tenant)?;
        let partition = tenant_id.partition_path();
        let mut batches = BTreeMap::new();
        for (table, hudi) in &silver {
            let snapshot = hudi
                .snapshot(Some(std::slice::from_ref(&partition)))
                .await?;
            batches.insert(
                *table,
                snapshot.read(lake.as_ref(), Some(&partition)).await?,
            );
        }
        let rows = compute(&tenant_silver_from_batches(&batches)?, value_set);
        let mut previous_batches = BTreeMap::new();
        for (table, hudi) in &gold {
            let snapshot = hudi
                .snapshot(Some(std::slice::from_ref(&partition)))
                .await?;
            previous_batches.insert(
                *table,
                snapshot.read(lake.as_ref(), Some(&partition)).await?,
            );
        }
        let had_gold = previous_batches
            .values()
            .any(|b| b.iter().any(|b| b.num_rows() > 0));
        let previous = gold_rows_from_batches(&previous_batches)?;
        if had_gold && previous == rows {
            continue;
        }
        for (table, stage) in staged.iter_mut() {
            stage.replace_partition(tenant);
            for batch in table.batches(tenant, &rows, refreshed_at)? {
                stage.push(tenant, &batch)?;
            }
        }
        report.refreshed.push(TenantRefresh {
            tenant_id: tenant.clone(),
            headline: rows.headline(),
            previous: had_gold.then(|| previous.headline()),
            rows,
        });
    }
    if !report.refreshed.is_empty() {
        for (table, hudi) in &gold {
            let stage = staged.get_mut(table).expect("staged per gold table");
            let outcome = hudi.commit_staged(stage).await?;
            if let Some(instant) = outcome.instant {
                report
                    .gold_instants
                    .push(format!("{}@{instant}", table.name()));
            }
        }
    }
    save_state(lake, &state).await?;
    for tenant in &report.refreshed {
        let message = message_for(tenant, &report);
        if let Err(e) = notifier.publish(&message).await {
            tracing::error!(error = %e, tenant_id = %tenant.tenant_id, "gold.refreshed could not be published");
        }
    }
    Ok(report)
}

async fn load_state(lake: &Arc<dyn ObjectStore>) -> Result<State> {
    match lake.get(&Path::from(STATE_PATH)).await {
        Ok(found) => Ok(serde_json::from_slice(&found.bytes().await?)?),
        Err(object_store::Error::NotFound { .. }) => Ok(State::default()),
        Err(e) => Err(e.into()),
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
    let mut by_tenant: BTreeMap<String, BTreeMap<GoldTable, Vec<arrow_array::RecordBatch>>> =
        BTreeMap::new();
    for table in GoldTable::ALL {
        let hudi = HudiTable::open(lake.clone(), table.def()).await?;
        let snapshot = hudi.snapshot(None).await?;
        for slice in snapshot.slices.values() {
            let tenant = slice
                .partition
                .strip_prefix("tenant_id=")
                .unwrap_or(&slice.partition)
                .to_owned();
            let batches = crate::hudi::read_base_file(lake.as_ref(), &slice.path).await?;
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
