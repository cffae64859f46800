//! Insert tiers: where a commit's rows go inside a bucket.
//!
//! Copy-on-write rewrites every file group a commit touches, and cleaning keeps each rewritten
//! slice for the retention window (the last 10 commits by default). With one file group per
//! bucket, a tenant that grows by a small file a day rewrote all of its data every day and kept
//! about eleven copies of it. So a bucket is a base file group (tier 0) and up to
//! [`INSERT_TIERS`] small file groups:
//! - a committed key is updated or deleted where it is: a key lives in exactly one tier, so a
//!   reader (Hudi's, `hudi-rs`, this writer's snapshot) never sees it twice;
//! - new keys go to tier 1; a tier that would outgrow its share moves into the next one with them
//!   (the last into the base), like carries in a counter, and is left with an empty slice (a file
//!   group without a `replacecommit` never leaves the table: it keeps its id, and its next insert
//!   starts again).
//!
//! A tier's share is a fraction of the base that grows [`GROWTH`]-fold per tier, with a floor of
//! [`MIN_TIER_ROWS`] for young tables: a commit of a few rows rewrites tier 1 (at most a
//! 64th of the base), rows are written again a handful of times in their life, and the base is
//! rewritten when the tiers hold a quarter of it. On disk, a bucket holds about its snapshot plus
//! the recent small tiers, instead of one copy per retained commit.
//!
//! Finding a key's tier reads the key column of each committed tier of the bucket: a commit's cost
//! grows with the key column of the bucket, not with its whole data.

use std::fs::File;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::TableDef;
use super::columns::string_column;
use super::key_map::{KeyMap, KeySet};
use super::staging::StagedRows;
use crate::error::Result;

/// Insert tiers per bucket, besides the base (tier 0).
pub const INSERT_TIERS: u32 = 3;

/// How much larger each tier's share is than the one below it.
const GROWTH: u64 = 4;

/// The share of tier 1 in a young table, in rows (tier `t`'s is this times `GROWTH^(t-1)`).
const MIN_TIER_ROWS: u64 = 64;

/// A committed file group of a bucket: its tier and a local copy of its latest slice.
pub(super) struct TierFile<'a> {
    pub tier: u32,
    pub file: &'a File,
    pub rows: u64,
}

impl<'a> TierFile<'a> {
    pub fn open(tier: u32, file: &'a File) -> Result<Self> {
        let rows = ParquetRecordBatchReaderBuilder::try_new(file.try_clone()?)?
            .metadata()
            .file_metadata()
            .num_rows();
        Ok(Self {
            tier,
            file,
            rows: rows.max(0) as u64,
        })
    }
}

/// One file group a commit writes in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TierMerge {
    pub tier: u32,
    /// Lower tiers whose rows move into this one; each is left with an empty slice.
    pub carried: Vec<u32>,
}

/// What a commit writes in one bucket, and which incoming key goes where.
#[derive(Debug, Default)]
pub(super) struct BucketPlan {
    pub merges: Vec<TierMerge>,
    /// The committed tier of each incoming key that has one.
    homes: KeyMap<u32>,
    /// The tier new keys go to, if any arrive.
    inserts: Option<u32>,
}

impl BucketPlan {
    /// Whether `merge` takes the incoming rows and deletes of `key`.
    pub fn accepts(&self, merge: &TierMerge, key: &str) -> bool {
        match self.homes.get(key) {
            Some(home) => *home == merge.tier || merge.carried.contains(home),
            None => self.inserts == Some(merge.tier),
        }
    }

    /// A recompute of the whole partition: everything goes into the base, the tiers are emptied.
    pub fn replace(committed: &[TierFile]) -> Self {
        Self {
            merges: vec![TierMerge {
                tier: 0,
                carried: committed
                    .iter()
                    .filter(|t| t.tier != 0 && t.rows > 0)
                    .map(|t| t.tier)
                    .collect(),
            }],
            homes: KeyMap::default(),
            inserts: Some(0),
        }
    }

    /// Plans the commit of the staged rows and deletes of one bucket over its committed tiers.
    pub fn upsert(
        def: &TableDef,
        group: &[StagedRows],
        partition: &str,
        bucket: u32,
        committed: &[TierFile],
    ) -> Result<Self> {
        let (mut upserts, mut deletes) = (KeySet::default(), KeySet::default());
        for staged in group {
            for (_, batch) in staged.bucket_batches(partition, bucket)? {
                let batch = batch?;
                let keys = string_column(&batch, &def.record_key)?;
                for key in keys.iter().flatten() {
                    upserts.insert(key, ());
                }
            }
            for delete in staged.bucket_deletes(partition, bucket) {
                deletes.insert(&delete.key, ());
            }
        }
        let homes = key_homes(def, committed, |key| {
            upserts.contains_key(key) || deletes.contains_key(key)
        })?;
        let mut merges: Vec<TierMerge> = Vec::new();
        let new_keys = upserts.count_missing_from(&homes) as u64;
        let inserts = (new_keys > 0).then(|| {
            let mut rows = [0u64; INSERT_TIERS as usize + 1];
            for tier in committed {
                rows[tier.tier as usize] = tier.rows;
            }
            let merge = place_inserts(&rows, new_keys);
            let tier = merge.tier;
            merges.push(merge);
            tier
        });
        let mut updated: Vec<u32> = homes.values().copied().collect();
        updated.sort_unstable();
        updated.dedup();
        for tier in updated {
            if !merges
                .iter()
                .any(|m| m.tier == tier || m.carried.contains(&tier))
            {
                merges.push(TierMerge {
                    tier,
                    carried: Vec::new(),
                });
            }
        }
        Ok(Self {
            merges,
            homes,
            inserts,
        })
    }
}

/// The tier that takes `new_keys` new keys given each tier's rows (`rows[0]` the base), and the
/// lower tiers that move into it: the first tier that holds its rows, the new keys and every tier
/// below within its share; the base when none does.
fn place_inserts(rows: &[u64; INSERT_TIERS as usize + 1], new_keys: u64) -> TierMerge {
    let base = rows[0];
    let mut carry = new_keys;
    let mut carried = Vec::new();
    for tier in 1..=INSERT_TIERS {
        let share =
            (MIN_TIER_ROWS * GROWTH.pow(tier - 1)).max(base / GROWTH.pow(INSERT_TIERS + 1 - tier));
        let here = rows[tier as usize];
        if here + carry <= share {
            return TierMerge { tier, carried };
        }
        if here > 0 {
            carried.push(tier);
        }
        carry += here;
    }
    TierMerge { tier: 0, carried }
}

/// The tier holding each committed key that is `incoming`, from the key columns of the tiers' files.
fn key_homes(
    def: &TableDef,
    committed: &[TierFile],
    incoming: impl Fn(&str) -> bool,
) -> Result<KeyMap<u32>> {
    let mut homes = KeyMap::default();
    for tier in committed {
        let builder = ParquetRecordBatchReaderBuilder::try_new(tier.file.try_clone()?)?;
        let key_column = builder.schema().index_of(&def.record_key)?;
        let projection = ProjectionMask::roots(builder.parquet_schema(), [key_column]);
        for batch in builder.with_projection(projection).build()? {
            let batch = batch?;
            let column = string_column(&batch, &def.record_key)?;
            for key in column.iter().flatten() {
                if incoming(key) {
                    homes.insert(key, tier.tier);
                }
            }
        }
    }
    Ok(homes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers(rows: [u64; 4], new_keys: u64) -> (u32, Vec<u32>) {
        let merge = place_inserts(&rows, new_keys);
        (merge.tier, merge.carried)
    }

    #[test]
    fn new_keys_fill_tier_one_until_its_share_then_carry_upwards() {
        // GIVEN a young table: every share is its floor (64, 256, 1024 rows)
        assert_eq!(tiers([0, 0, 0, 0], 10), (1, vec![]));
        assert_eq!(tiers([0, 60, 0, 0], 4), (1, vec![]));
        // WHEN tier 1 would pass 64 rows, it moves into tier 2 with the new keys
        assert_eq!(tiers([0, 60, 0, 0], 5), (2, vec![1]));
        // AND when tier 2 is full too, both move on, into the base past the last tier
        assert_eq!(tiers([0, 60, 250, 0], 5), (3, vec![1, 2]));
        assert_eq!(tiers([0, 60, 250, 1000], 5), (0, vec![1, 2, 3]));
        // AND a big first load goes straight to the base
        assert_eq!(tiers([0, 0, 0, 0], 10_000), (0, vec![]));
    }

    #[test]
    fn shares_grow_with_the_base() {
        // GIVEN a base of 64,000 rows: shares of 1,000, 4,000 and 16,000 rows
        assert_eq!(tiers([64_000, 990, 0, 0], 10), (1, vec![]));
        assert_eq!(tiers([64_000, 995, 0, 0], 10), (2, vec![1]));
        assert_eq!(tiers([64_000, 995, 3_000, 15_000], 10), (0, vec![1, 2, 3]));
    }
}
