//! A minimal Apache Hudi copy-on-write writer and snapshot reader (table version 6, timeline
//! layout version 1), the format Athena's Hudi 0.14/0.15 reader and the `hudi` Python reader read.
//!
//! Layout of one table under `<base>`:
//! - `.hoodie/hoodie.properties`, written once at creation;
//! - `.hoodie/<instant>.commit.requested` → `.inflight` → `.commit`, the `.commit` last;
//! - `<partition>/.hoodie_partition_metadata` and base files `<fileId>_<writeToken>_<instant>.parquet`
//!   whose first five columns are the `_hoodie_*` meta fields.
//!
//! Records are placed in buckets by Hudi's bucket hash (hash of the record key modulo the bucket
//! count), so an upsert knows which few file groups can hold a key, and each commit rewrites only
//! the buckets it touches. Within a bucket, new keys go to small insert tiers that merge into the
//! bucket's base file group as they grow (see [`tiers`]): a commit of a few rows rewrites a few
//! rows' worth of files, not the bucket.
//!
//! Table services (cleaning, archival, bounded control files) are in [`lifecycle`].
//!
//! Nothing may be written inside a partition folder but base files and the partition metadata:
//! the reader treats only leaf folders as partitions. Commit sequencing files therefore live
//! outside the table, under `<lake>/_metriccare/commits/<table path>/` (see [`writer`]).

mod avro;
mod columns;
mod instant;
mod key_map;
mod lifecycle;
mod merge;
mod schema_evolution;
mod sizing;
mod snapshot;
mod staging;
mod tiers;
mod tombstones;
mod writer;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use instant::Instant;
use object_store::path::Path;

pub use avro::avro_schema;
pub use lifecycle::{
    Retention, SEQUENCES_KEPT, ServicesReport, ServicesState, read_services_state,
    services_state_path,
};
pub use merge::rewrite_base_file;
pub use schema_evolution::conform;
pub use snapshot::{FileSlice, Snapshot, list_partitions, read_base_file};
pub use staging::{Delete, StagedRows};
pub use tombstones::{DELETED_AT, Tombstones};
pub use writer::{CommitOutcome, HudiTable};

/// Names of the five Hudi meta columns, in file order.
pub const META_COLUMNS: [&str; 5] = [
    "_hoodie_commit_time",
    "_hoodie_commit_seqno",
    "_hoodie_record_key",
    "_hoodie_partition_path",
    "_hoodie_file_name",
];

/// Whether an existing table must hold this build's value for a `hoodie.properties` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Property {
    /// Decides where records live or how they are keyed: a table with another value is refused.
    MustMatch,
    /// Written at creation; a table with another value is still read and written.
    WrittenOnly,
}

/// What a table is: its name, key fields and the schema of its data columns (without meta columns).
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: String,
    /// Path of the table's base folder inside the lake store, e.g. `silver/patient`.
    pub base: Path,
    pub record_key: String,
    pub partition_field: String,
    /// A Timestamp(µs, UTC) column: the newest version of a record wins, an older never overwrites.
    pub precombine: String,
    pub buckets: u32,
    pub data_schema: SchemaRef,
}

impl TableDef {
    /// The full file schema: the meta columns, then the data columns.
    pub fn file_schema(&self) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = META_COLUMNS
            .iter()
            .map(|name| Arc::new(Field::new(*name, DataType::Utf8, false)))
            .collect();
        fields.extend(self.data_schema.fields().iter().cloned());
        Arc::new(Schema::new(fields))
    }

    /// Every `hoodie.properties` entry of this table, in file order: the one list of keys. The
    /// checksum is Hudi's: CRC32 of `"<database>.<table>"` (no database here, so `".<table>"`).
    fn property_entries(&self) -> [(&'static str, String, Property); 16] {
        use Property::{MustMatch, WrittenOnly};
        let checksum = crc32fast::hash(format!(".{}", self.name).as_bytes());
        [
            ("hoodie.table.name", self.name.clone(), MustMatch),
            ("hoodie.table.type", "COPY_ON_WRITE".into(), MustMatch),
            ("hoodie.table.version", "6".into(), MustMatch),
            ("hoodie.timeline.layout.version", "1".into(), WrittenOnly),
            (
                "hoodie.table.recordkey.fields",
                self.record_key.clone(),
                MustMatch,
            ),
            (
                "hoodie.table.partition.fields",
                self.partition_field.clone(),
                MustMatch,
            ),
            (
                "hoodie.table.precombine.field",
                self.precombine.clone(),
                MustMatch,
            ),
            (
                "hoodie.table.keygenerator.class",
                "org.apache.hudi.keygen.SimpleKeyGenerator".into(),
                WrittenOnly,
            ),
            (
                "hoodie.datasource.write.hive_style_partitioning",
                "true".into(),
                MustMatch,
            ),
            (
                "hoodie.table.base.file.format",
                "PARQUET".into(),
                WrittenOnly,
            ),
            ("hoodie.populate.meta.fields", "true".into(), WrittenOnly),
            ("hoodie.archivelog.folder", "archived".into(), WrittenOnly),
            ("hoodie.index.type", "BUCKET".into(), MustMatch),
            (
                "hoodie.bucket.index.num.buckets",
                self.buckets.to_string(),
                MustMatch,
            ),
            (
                "hoodie.bucket.index.hash.field",
                self.record_key.clone(),
                MustMatch,
            ),
            ("hoodie.table.checksum", checksum.to_string(), WrittenOnly),
        ]
    }

    /// `hoodie.properties` for this table.
    pub fn properties(&self) -> String {
        let mut text = String::from("#Properties saved by MetricCare\n");
        for (key, value, _) in self.property_entries() {
            text.push_str(key);
            text.push('=');
            text.push_str(&value);
            text.push('\n');
        }
        text
    }

    /// Refuses a table whose `hoodie.properties` (`existing`) differs from this definition in an
    /// entry that decides where records live or how they are keyed.
    pub(crate) fn check_properties(&self, existing: &str) -> crate::error::Result<()> {
        let value_of = |key: &str| -> Option<&str> {
            existing
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        };
        for (key, want, check) in self.property_entries() {
            let have = value_of(key);
            if check == Property::MustMatch && have != Some(want.as_str()) {
                return Err(crate::error::CoreError::Table {
                    table: self.name.clone(),
                    message: format!(
                        "existing table has {key}={have:?}, this build expects {want:?}"
                    ),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn hoodie_path(&self, file: &str) -> Path {
        self.base.clone().join(".hoodie").join(file)
    }

    /// The timeline file of `instant` in `.hoodie/`.
    pub(crate) fn instant_path(&self, instant: Instant<'_>) -> Path {
        self.hoodie_path(&instant.file_name())
    }

    pub(crate) fn partition_dir(&self, partition: &str) -> Path {
        self.base.clone().join(partition)
    }
}

/// Hudi's bucket for a record key: `(List.of(key).hashCode() & Integer.MAX_VALUE) % buckets`, the
/// same arithmetic as Hudi's Java `BucketIdentifier`, so a Spark writer configured with the same
/// bucket count routes every key to the same file group.
pub fn bucket_of(record_key: &str, buckets: u32) -> u32 {
    let string_hash = record_key.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let list_hash = 31i32.wrapping_add(string_hash);
    ((list_hash & i32::MAX) as u32) % buckets.max(1)
}

/// The file id of a bucket: Hudi's bucket-index shape (`<8-digit bucket>-<uuid tail>-0`), with the
/// tail derived from table and partition so that two writers creating the same bucket agree.
pub fn file_id(table: &str, partition: &str, bucket: u32) -> String {
    let a = crc32fast::hash(format!("{table}/{partition}").as_bytes());
    let b = crc32fast::hash(format!("{partition}/{table}").as_bytes());
    format!(
        "{bucket:08}-{:04x}-{:04x}-{:04x}-{:08x}{:04x}-0",
        a >> 16,
        a & 0xffff,
        b >> 16,
        b,
        bucket & 0xffff
    )
}

/// The most a partition's bucket count grows: the initial count doubled this many times.
pub const MAX_LAYOUT_DOUBLINGS: u32 = 10;

/// The file id of a bucket of a partition laid out in `layout` buckets. A partition in the table's
/// initial layout keeps the ids of [`file_id`]; a re-sized partition's ids are derived from its
/// layout too, so that a file group of one layout is never taken for one of another.
pub fn layout_file_id(def: &TableDef, partition: &str, bucket: u32, layout: u32) -> String {
    if layout == def.buckets {
        return file_id(&def.name, partition, bucket);
    }
    let a = crc32fast::hash(format!("{}/{partition}/{layout}", def.name).as_bytes());
    let b = crc32fast::hash(format!("{layout}/{partition}/{}", def.name).as_bytes());
    format!(
        "{bucket:08}-{:04x}-{:04x}-{:04x}-{:08x}{:04x}-0",
        a >> 16,
        a & 0xffff,
        b >> 16,
        b,
        layout & 0xffff
    )
}

/// The file id of one tier of a bucket (see [`tiers`]): tier 0, the bucket's base file group, is
/// [`layout_file_id`]; insert tier `t` ends in `-<t>` where the base ends in `-0`.
pub fn tier_file_id(
    def: &TableDef,
    partition: &str,
    bucket: u32,
    layout: u32,
    tier: u32,
) -> String {
    let base = layout_file_id(def, partition, bucket, layout);
    match tier {
        0 => base,
        _ => format!("{}-{tier}", &base[..base.len() - 2]),
    }
}

/// The layout (bucket count) and tier a file id of the partition was made for, if it is one of
/// this writer's.
pub fn layout_of(def: &TableDef, partition: &str, file_id: &str) -> Option<(u32, u32)> {
    let bucket: u32 = file_id.get(..8)?.parse().ok()?;
    let (stem, tier) = file_id.rsplit_once('-')?;
    let tier: u32 = tier.parse().ok().filter(|t| *t <= tiers::INSERT_TIERS)?;
    (0..=MAX_LAYOUT_DOUBLINGS)
        .map(|doublings| def.buckets << doublings)
        .find(|&layout| {
            bucket < layout
                && layout_file_id(def, partition, bucket, layout).strip_suffix("-0") == Some(stem)
        })
        .map(|layout| (layout, tier))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table definition with the patient table's names and no data columns.
    fn patient_def() -> TableDef {
        TableDef {
            name: "patient".into(),
            base: Path::from("silver/patient"),
            record_key: "patient_key".into(),
            partition_field: "tenant_id".into(),
            precombine: "last_updated".into(),
            buckets: 4,
            data_schema: Arc::new(Schema::empty()),
        }
    }

    #[test]
    fn a_file_id_names_its_layout() {
        let def = patient_def();
        let initial = layout_file_id(&def, "tenant_id=a", 3, 4);
        assert_eq!(initial, file_id("patient", "tenant_id=a", 3));
        assert_eq!(layout_of(&def, "tenant_id=a", &initial), Some((4, 0)));
        let resized = layout_file_id(&def, "tenant_id=a", 3, 16);
        assert_ne!(resized, initial);
        assert!(resized.starts_with("00000003-") && resized.ends_with("-0"));
        assert_eq!(layout_of(&def, "tenant_id=a", &resized), Some((16, 0)));
        assert_eq!(layout_of(&def, "tenant_id=b", &resized), None);
        let tier = tier_file_id(&def, "tenant_id=a", 3, 16, 2);
        assert_eq!(tier.strip_suffix("-2"), resized.strip_suffix("-0"));
        assert_eq!(layout_of(&def, "tenant_id=a", &tier), Some((16, 2)));
        assert_eq!(layout_of(&def, "tenant_id=a", "00000003-random-id-0"), None);
    }

    #[test]
    fn bucket_matches_java_list_hash_code() {
        // Java: List.of("abc").hashCode() == 31 + "abc".hashCode() == 31 + 96354 == 96385.
        assert_eq!(bucket_of("abc", 1_000_000), 96_385);
        assert_eq!(bucket_of("abc", 4), 96_385 % 4);
        // A long key overflows i32 and must wrap as Java does; the result stays in range.
        let key = "f".repeat(40);
        assert!(bucket_of(&key, 8) < 8);
    }

    #[test]
    fn file_ids_are_stable_and_distinct_per_bucket() {
        let a = file_id("patient", "tenant_id=a", 1);
        assert_eq!(a, file_id("patient", "tenant_id=a", 1));
        assert_ne!(a, file_id("patient", "tenant_id=a", 2));
        assert_ne!(a, file_id("patient", "tenant_id=b", 1));
        assert!(a.starts_with("00000001-") && a.ends_with("-0") && !a.contains('_'));
    }

    #[test]
    fn checksum_is_hudis() {
        let def = patient_def();
        // CRC32(".patient"), the value Hudi's Java HoodieTableConfig computes.
        assert!(
            def.properties()
                .contains("hoodie.table.checksum=241739672\n")
        );
    }

    #[test]
    fn a_table_keyed_or_laid_out_otherwise_is_refused_and_naming_details_are_not() {
        // GIVEN the properties this build writes for the patient table
        let def = patient_def();
        let written = def.properties();
        // THEN they pass their own check
        def.check_properties(&written).unwrap();
        // AND another bucket count or record key is refused, naming the key
        for (from, to) in [
            (
                "hoodie.bucket.index.num.buckets=4",
                "hoodie.bucket.index.num.buckets=8",
            ),
            (
                "hoodie.table.recordkey.fields=patient_key",
                "hoodie.table.recordkey.fields=id",
            ),
            (
                "hoodie.bucket.index.hash.field=patient_key",
                "hoodie.bucket.index.hash.field=id",
            ),
            (
                "hoodie.datasource.write.hive_style_partitioning=true",
                "hoodie.datasource.write.hive_style_partitioning=false",
            ),
        ] {
            let error = def
                .check_properties(&written.replace(from, to))
                .unwrap_err()
                .to_string();
            let key = from.split('=').next().unwrap();
            assert!(error.contains(key), "{error}");
        }
        // AND a missing identity entry is refused too
        let without_type: String = written
            .lines()
            .filter(|line| !line.starts_with("hoodie.table.type="))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(def.check_properties(&without_type).is_err());
        // AND an entry written only at creation may differ (a table another writer created)
        def.check_properties(&written.replace("#Properties saved by MetricCare", "#Hudi"))
            .unwrap();
        def.check_properties(
            &written.replace("archivelog.folder=archived", "archivelog.folder=archive"),
        )
        .unwrap();
    }
}
