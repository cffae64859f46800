//! The silver tables: their schemas (documented in `docs/silver-schema.md`) and the conversion of
//! de-identified records into Arrow batches for the Hudi writer.

mod records;

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use object_store::path::Path;

use crate::fhir::CodingValue;
use crate::hudi::TableDef;
pub use crate::rows::BatchBuilder;
use crate::rows::{Kind, field};

pub(crate) use records::{Resolver, RowError, resolve_references, write_row};

/// Bucket count of every silver table (fixed at creation: it decides which file group holds a key).
pub const SILVER_BUCKETS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SilverTable {
    Patient,
    Encounter,
    Condition,
    Organization,
}

impl SilverTable {
    pub const ALL: [SilverTable; 4] = [
        Self::Patient,
        Self::Encounter,
        Self::Condition,
        Self::Organization,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Encounter => "encounter",
            Self::Condition => "condition",
            Self::Organization => "organization",
        }
    }

    pub fn record_key(self) -> &'static str {
        match self {
            Self::Patient => "patient_key",
            Self::Encounter => "encounter_key",
            Self::Condition => "condition_key",
            Self::Organization => "organization_key",
        }
    }

    /// The FHIR resource type this table holds.
    pub fn resource_type(self) -> &'static str {
        match self {
            Self::Patient => "Patient",
            Self::Encounter => "Encounter",
            Self::Condition => "Condition",
            Self::Organization => "Organization",
        }
    }

    pub fn from_resource_type(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.resource_type() == kind)
    }

    pub fn def(self) -> TableDef {
        TableDef {
            name: self.name().to_owned(),
            base: Path::from("silver").join(self.name()),
            record_key: self.record_key().to_owned(),
            partition_field: "tenant_id".to_owned(),
            precombine: "last_updated".to_owned(),
            buckets: SILVER_BUCKETS,
            data_schema: self.schema(),
        }
    }

    pub fn schema(self) -> SchemaRef {
        use Kind::*;
        let specific: &[(&str, Kind, bool)] = match self {
            Self::Patient => &[
                ("gender", Str, true),
                ("birth_year", I32, true),
                ("deceased", Bool, true),
                ("deceased_at", Ts, true),
                ("postal_prefix", Str, true),
                ("state", Str, true),
                ("country", Str, true),
                ("marital_status", Str, true),
            ],
            Self::Encounter => &[
                ("patient_key", Str, false),
                ("status", Str, true),
                ("class_code", Str, true),
                ("type_code", Str, true),
                ("type_display", Str, true),
                ("reason_code", Str, true),
                ("period_start", Ts, true),
                ("period_end", Ts, true),
                ("hospital_key", Str, true),
                ("hospital_name", Str, true),
                ("discharge_disposition", Str, true),
            ],
            Self::Condition => &[
                ("patient_key", Str, false),
                ("encounter_key", Str, true),
                ("code_system", Str, true),
                ("code", Str, true),
                ("code_display", Str, true),
                ("clinical_status", Str, true),
                ("verification_status", Str, true),
                ("category", Str, true),
                ("onset_at", Ts, true),
                ("abatement_at", Ts, true),
                ("recorded_at", Ts, true),
            ],
            Self::Organization => &[
                ("identifier_key", Str, true),
                ("name", Str, true),
                ("type_code", Str, true),
                ("active", Bool, true),
                ("city", Str, true),
                ("state", Str, true),
            ],
        };
        let mut fields = vec![
            field(self.record_key(), Str, false),
            field("tenant_id", Str, false),
        ];
        fields.extend(
            specific
                .iter()
                .map(|(name, kind, nullable)| field(name, *kind, *nullable)),
        );
        fields.extend([
            field("last_updated", Ts, false),
            field("version_id", Str, true),
            field("source_file_id", Str, false),
            field("ingested_at", Ts, false),
        ]);
        fields.extend(
            self.added_columns()
                .iter()
                .map(|name| field(name, Str, true)),
        );
        Arc::new(Schema::new(fields))
    }

    /// Columns added after the first release, in the order they were added: always after every
    /// older column, nullable. Hudi's schema evolution allows adding a nullable column at the end
    /// only (Hudi's Java readers, Athena's among them, fail on a table whose fields were
    /// reordered while some base files are older).
    pub fn added_columns(self) -> &'static [&'static str] {
        match self {
            Self::Encounter => &[
                "class_system",
                "part_of_key",
                "discharge_disposition_system",
            ],
            Self::Condition => &["code_codings"],
            Self::Patient | Self::Organization => &[],
        }
    }
}

/// `condition.code_codings`: every coding of the condition's code as a JSON array of
/// `{"system", "code"}` (no displays: a local display can be free text). A JSON string rather than
/// a nested column keeps every silver column flat for every reader (Athena reads it with
/// `json_parse`). Null when the code has no coding.
pub fn codings_column(codings: &[CodingValue]) -> Option<String> {
    (!codings.is_empty())
        .then(|| serde_json::to_string(codings).expect("codings serialise as JSON"))
}

/// Reads `condition.code_codings` back.
pub fn parse_codings_column(text: &str) -> Result<Vec<CodingValue>, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_starts_with_its_key_and_tenant_and_ends_with_lineage_then_added_columns() {
        for table in SilverTable::ALL {
            let schema = table.schema();
            assert_eq!(schema.field(0).name(), table.record_key());
            assert_eq!(schema.field(1).name(), "tenant_id");
            let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let added = table.added_columns();
            let before_added = &names[..names.len() - added.len()];
            assert!(before_added.ends_with(&[
                "last_updated",
                "version_id",
                "source_file_id",
                "ingested_at"
            ]));
            assert!(names.ends_with(added));
            assert!(crate::hudi::avro_schema(table.name(), &schema).is_ok());
        }
    }

    #[test]
    fn codings_round_trip_through_their_column() {
        let codings = [
            CodingValue {
                system: Some("http://hl7.org/fhir/sid/icd-10-cm".into()),
                code: "A41.9".into(),
            },
            CodingValue {
                system: None,
                code: "LOCAL \"7\"".into(),
            },
        ];
        let text = codings_column(&codings).unwrap();
        assert_eq!(
            text,
            r#"[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"A41.9"},{"code":"LOCAL \"7\""}]"#
        );
        assert_eq!(parse_codings_column(&text).unwrap(), codings);
        assert_eq!(codings_column(&[]), None);
    }

    #[test]
    fn builds_a_batch_from_rows() {
        let schema = SilverTable::Organization.schema();
        let mut builder = BatchBuilder::new(schema.clone());
        builder
            .row()
            .str(Some("k"))
            .str(Some("t"))
            .str(None)
            .str(Some("General"))
            .str(None)
            .bool(Some(true))
            .str(None)
            .str(None)
            .ts(Some(1))
            .str(None)
            .str(Some("src"))
            .ts(Some(2))
            .end();
        let batch = builder.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), schema);
    }
}
