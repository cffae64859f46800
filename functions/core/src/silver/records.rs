//! FHIR records as silver rows: their references resolved to pseudonymous keys, their values
//! appended in the table's schema order.

use std::collections::HashMap;

use super::codings_column;
use crate::deid::{PseudonymCache, Pseudonymizer};
use crate::fhir::{Record, RefTarget};
use crate::ingest::LoadContext;
use crate::rows::RowWriter;
use crate::tenant::TenantId;

/// Turns source references into pseudonymous keys, within one file's context.
pub(crate) struct Resolver<'a> {
    pub(crate) tenant: &'a TenantId,
    pub(crate) pseudonymizer: &'a Pseudonymizer,
    pub(crate) uuids: &'a HashMap<String, (String, String)>,
    pub(crate) references: &'a std::cell::RefCell<PseudonymCache>,
    /// At the end of the file an unknown `urn:uuid` is an error, before it may still come.
    pub(crate) last_chance: bool,
}

pub(crate) enum RowError {
    Pending,
    Invalid(String),
}

impl Resolver<'_> {
    /// The pseudonym of a resource's own id: unique per row, so not worth caching.
    pub(crate) fn key_of(&self, kind: &str, id: &str) -> String {
        self.pseudonymizer.pseudonym(self.tenant, kind, id)
    }

    /// The pseudonym a reference points at: references repeat, so they go through the cache.
    fn referenced_key(&self, kind: &str, id: &str) -> String {
        self.references
            .borrow_mut()
            .pseudonym(self.pseudonymizer, self.tenant, kind, id)
    }

    fn resolve(&self, target: &RefTarget, field: &str) -> Result<String, RowError> {
        match target {
            RefTarget::Literal { kind, id } => Ok(self.referenced_key(kind, id)),
            RefTarget::Uuid(uuid) => match self.uuids.get(uuid) {
                Some((kind, id)) => Ok(self.referenced_key(kind, id)),
                None if self.last_chance => Err(RowError::Invalid(format!(
                    "{field}: urn:uuid reference to a resource that is not in this Bundle"
                ))),
                None => Err(RowError::Pending),
            },
            // Always the key of the search itself, whatever else the file holds, so that the key does
            // not depend on file order; it equals the `identifier_key` of the organization it names.
            RefTarget::Conditional { kind, query } => Ok(self.conditional_key(kind, query)),
        }
    }

    fn conditional_key(&self, kind: &str, query: &str) -> String {
        let canonical = query.replace("%7C", "|").replace("%7c", "|");
        self.referenced_key(kind, &format!("?{canonical}"))
    }
}

/// The references of one record, resolved to pseudonymous keys, in the order its row holds them.
type ResolvedRefs = [Option<String>; 3];

/// Resolves a record's references: the only step of a row that can fail (or wait for a `urn:uuid`
/// further down the Bundle), so it runs before anything is appended.
pub(crate) fn resolve_references(
    resolver: &Resolver<'_>,
    record: &Record,
) -> Result<ResolvedRefs, RowError> {
    let resolve = |target: &Option<RefTarget>, field: &str| {
        target
            .as_ref()
            .map(|t| resolver.resolve(t, field))
            .transpose()
    };
    Ok(match record {
        Record::Encounter(e) => [
            resolve(&e.patient, "subject")?,
            resolve(&e.hospital, "serviceProvider")?,
            resolve(&e.part_of, "partOf")?,
        ],
        Record::Condition(c) => [
            resolve(&c.patient, "subject")?,
            resolve(&c.encounter, "encounter")?,
            None,
        ],
        Record::Organization(o) => [
            o.identifier
                .as_ref()
                .map(|i| resolver.conditional_key("Organization", &format!("identifier={i}"))),
            None,
            None,
        ],
        Record::Patient(_) => [None, None, None],
    })
}

/// Appends one silver row, in the table's schema order, borrowing every value.
/// `ordering` is the version's precombine value; lineage (tenant, ledger id, ingest time) comes
/// from the file's context.
pub(crate) fn write_row(
    row: &mut RowWriter<'_>,
    key: &str,
    record: &Record,
    references: &ResolvedRefs,
    context: &LoadContext,
    ordering: i64,
) {
    row.str(Some(key)).str(Some(context.tenant.as_str()));
    let [first_ref, second_ref, third_ref] = references.each_ref().map(Option::as_deref);
    match record {
        Record::Patient(p) => {
            row.str(p.gender.as_deref())
                .i32(p.birth_year)
                .bool(p.deceased)
                .ts(p.deceased_at)
                .str(p.postal_prefix.as_deref())
                .str(p.state.as_deref())
                .str(p.country.as_deref())
                .str(p.marital_status.as_deref());
        }
        Record::Encounter(e) => {
            row.str(first_ref)
                .str(e.status.as_deref())
                .str(e.class_code.as_deref())
                .str(e.type_code.as_deref())
                .str(e.type_display.as_deref())
                .str(e.reason_code.as_deref())
                .ts(e.period_start)
                .ts(e.period_end)
                .str(second_ref)
                .str(e.hospital_name.as_deref())
                .str(e.discharge_disposition.as_deref());
        }
        Record::Condition(c) => {
            row.str(first_ref)
                .str(second_ref)
                .str(c.code_system.as_deref())
                .str(c.code.as_deref())
                .str(c.code_display.as_deref())
                .str(c.clinical_status.as_deref())
                .str(c.verification_status.as_deref())
                .str(c.category.as_deref())
                .ts(c.onset_at)
                .ts(c.abatement_at)
                .ts(c.recorded_at);
        }
        Record::Organization(o) => {
            row.str(first_ref)
                .str(o.name.as_deref())
                .str(o.type_code.as_deref())
                .bool(o.active)
                .str(o.city.as_deref())
                .str(o.state.as_deref());
        }
    }
    let common = record.common();
    row.ts(Some(ordering))
        .str(common.version_id.as_deref())
        .str(Some(&context.ledger_id))
        .ts(Some(context.now));
    // The columns added since the first release (`SilverTable::added_columns`), after lineage.
    match record {
        Record::Encounter(e) => {
            row.str(e.class_system.as_deref())
                .str(third_ref)
                .str(e.discharge_disposition_system.as_deref());
        }
        Record::Condition(c) => {
            row.str(codings_column(&c.codings).as_deref());
        }
        Record::Patient(_) | Record::Organization(_) => {}
    }
    row.end();
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, TimestampMicrosecondType};
    use arrow_array::{Array, RecordBatch};

    use super::*;
    use crate::fhir::{Parsed, parse_resource};
    use crate::silver::{BatchBuilder, SilverTable};

    /// The ingest time of the test file: 2024-06-01T12:00:00Z.
    const NOW: i64 = 1_717_243_200_000_000;

    fn context() -> LoadContext {
        LoadContext {
            tenant: TenantId::parse("tenant-01").unwrap(),
            ledger_id: "ledger-1".into(),
            now: NOW,
            delete_ordering: NOW,
            pseudonymizer: Pseudonymizer::new(&[1; 32]).unwrap(),
            erased: Arc::new(BTreeSet::new()),
        }
    }

    /// The pseudonym of `kind/id` in the test context: what every key column must hold.
    fn key(kind: &str, id: &str) -> String {
        let context = context();
        context.pseudonymizer.pseudonym(&context.tenant, kind, id)
    }

    /// Parses `raw` as the ingest does, resolves its references (the Bundle's `urn:uuid` entries
    /// are `uuids`) and writes its row with its `meta.lastUpdated` as the ordering, into a batch of
    /// its table.
    fn written(raw: &str, uuids: &[(&str, &str, &str)]) -> (SilverTable, RecordBatch) {
        let context = context();
        let Ok(Parsed::Kept(record)) = parse_resource(raw, None) else {
            panic!("not a silver resource: {raw}")
        };
        let uuids = uuids
            .iter()
            .map(|(uuid, kind, id)| (uuid.to_string(), (kind.to_string(), id.to_string())))
            .collect();
        let references = RefCell::default();
        let resolver = Resolver {
            tenant: &context.tenant,
            pseudonymizer: &context.pseudonymizer,
            uuids: &uuids,
            references: &references,
            last_chance: true,
        };
        let Ok(resolved) = resolve_references(&resolver, &record) else {
            panic!("a reference did not resolve")
        };
        let table = SilverTable::from_resource_type(record.resource_type()).unwrap();
        let key = resolver.key_of(record.resource_type(), &record.common().id);
        let ordering = record.common().last_updated.expect("meta.lastUpdated");
        let mut builder = BatchBuilder::new(table.schema());
        write_row(
            &mut builder.row(),
            &key,
            &record,
            &resolved,
            &context,
            ordering,
        );
        (table, builder.finish().unwrap())
    }

    fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
        batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_ref()
    }

    fn text<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a str> {
        let column = column(batch, name);
        (!column.is_null(0)).then(|| column.as_string::<i32>().value(0))
    }

    fn timestamp(batch: &RecordBatch, name: &str) -> Option<i64> {
        let column = column(batch, name);
        (!column.is_null(0)).then(|| column.as_primitive::<TimestampMicrosecondType>().value(0))
    }

    /// The tenant every silver row is partitioned by, and the lineage it ends with: ordering,
    /// version, source file, ingest time.
    fn assert_tenant_and_lineage(batch: &RecordBatch, ordering: i64, version: Option<&str>) {
        assert_eq!(text(batch, "tenant_id"), Some("tenant-01"));
        assert_eq!(timestamp(batch, "last_updated"), Some(ordering));
        assert_eq!(text(batch, "version_id"), version);
        assert_eq!(text(batch, "source_file_id"), Some("ledger-1"));
        assert_eq!(timestamp(batch, "ingested_at"), Some(NOW));
    }

    #[test]
    fn a_patient_row_holds_its_pseudonym_and_limited_data_set_fields() {
        // GIVEN a Patient with direct identifiers, a death date with an offset and an address
        let raw = r#"{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2024-01-02T03:04:05+02:00","versionId":"3"},
            "identifier":[{"system":"http://hospital.example/mrn","value":"MRN-1"}],
            "name":[{"family":"Doe","given":["Jane"]}],"gender":"female","birthDate":"1980-06-15",
            "deceasedDateTime":"2024-03-01T10:00:00-05:00",
            "address":[{"line":["1 Main St"],"city":"Boston","state":"MA","postalCode":"02139","country":"US"}],
            "maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]}}"#;

        // WHEN its row is written
        let (table, batch) = written(raw, &[]);

        // THEN one patient row keyed by the pseudonym, never the source id
        assert_eq!(table, SilverTable::Patient);
        assert_eq!((batch.num_rows(), batch.schema()), (1, table.schema()));
        let patient_key = text(&batch, "patient_key").unwrap();
        assert_eq!(patient_key, key("Patient", "p1"));
        assert_ne!(patient_key, "p1");
        // AND the limited data set: birth year, 3-digit postal prefix, the death instant in UTC
        assert_eq!(text(&batch, "gender"), Some("female"));
        assert_eq!(
            column(&batch, "birth_year")
                .as_primitive::<Int32Type>()
                .value(0),
            1980
        );
        assert!(column(&batch, "deceased").as_boolean().value(0));
        // 2024-03-01T15:00:00Z
        assert_eq!(
            timestamp(&batch, "deceased_at"),
            Some(1_709_305_200_000_000)
        );
        assert_eq!(text(&batch, "postal_prefix"), Some("021"));
        assert_eq!(text(&batch, "state"), Some("MA"));
        assert_eq!(text(&batch, "country"), Some("US"));
        assert_eq!(text(&batch, "marital_status"), Some("M"));
        // 2024-01-02T01:04:05Z
        assert_tenant_and_lineage(&batch, 1_704_157_445_000_000, Some("3"));
        // AND no text column holds an identifier of the source
        for (field, values) in batch.schema().fields().iter().zip(batch.columns()) {
            if let Some(values) = values.as_string_opt::<i32>() {
                for phi in ["p1", "MRN-1", "Doe", "Jane", "1 Main St", "Boston", "02139"] {
                    assert!(
                        values.iter().flatten().all(|v| !v.contains(phi)),
                        "{phi} in {}",
                        field.name()
                    );
                }
            }
        }
    }

    #[test]
    fn an_encounter_row_points_at_its_patient_hospital_and_stay_by_their_keys() {
        // GIVEN an Encounter of a Bundle: its subject a urn:uuid entry, its hospital a conditional
        // reference, its stay a literal one
        let raw = r#"{"resourceType":"Encounter","id":"e1","meta":{"lastUpdated":"2023-05-12T16:30:00Z"},"status":"finished",
            "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
            "type":[{"coding":[{"system":"http://snomed.info/sct","code":"183452005","display":"Emergency hospital admission"}]}],
            "subject":{"reference":"urn:uuid:0b7e-p1"},
            "period":{"start":"2023-05-10T10:00:00+02:00","end":"2023-05-12T16:30:00Z"},
            "serviceProvider":{"reference":"Organization?identifier=https://github.com/synthetichealth/synthea|hosp-1","display":"General Hospital"},
            "partOf":{"reference":"Encounter/e0"},
            "reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"91302008"}]}],
            "hospitalization":{"dischargeDisposition":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/discharge-disposition","code":"home"}]}}}"#;

        // WHEN its row is written, the Bundle naming Patient p1 as that urn:uuid
        let (table, batch) = written(raw, &[("0b7e-p1", "Patient", "p1")]);

        // THEN one encounter row whose references are the keys of what they name
        assert_eq!(table, SilverTable::Encounter);
        assert_eq!((batch.num_rows(), batch.schema()), (1, table.schema()));
        assert_eq!(
            text(&batch, "encounter_key"),
            Some(key("Encounter", "e1").as_str())
        );
        assert_eq!(
            text(&batch, "patient_key"),
            Some(key("Patient", "p1").as_str())
        );
        assert_eq!(
            text(&batch, "hospital_key"),
            Some(
                key(
                    "Organization",
                    "?identifier=https://github.com/synthetichealth/synthea|hosp-1"
                )
                .as_str()
            )
        );
        assert_eq!(
            text(&batch, "part_of_key"),
            Some(key("Encounter", "e0").as_str())
        );
        // AND its codes and its period in UTC
        assert_eq!(text(&batch, "status"), Some("finished"));
        assert_eq!(text(&batch, "class_code"), Some("IMP"));
        assert_eq!(
            text(&batch, "class_system"),
            Some("http://terminology.hl7.org/CodeSystem/v3-ActCode")
        );
        assert_eq!(text(&batch, "type_code"), Some("183452005"));
        assert_eq!(
            text(&batch, "type_display"),
            Some("Emergency hospital admission")
        );
        assert_eq!(text(&batch, "reason_code"), Some("91302008"));
        // 2023-05-10T08:00:00Z and 2023-05-12T16:30:00Z
        assert_eq!(
            timestamp(&batch, "period_start"),
            Some(1_683_705_600_000_000)
        );
        assert_eq!(timestamp(&batch, "period_end"), Some(1_683_909_000_000_000));
        assert_eq!(text(&batch, "hospital_name"), Some("General Hospital"));
        assert_eq!(text(&batch, "discharge_disposition"), Some("home"));
        assert_eq!(
            text(&batch, "discharge_disposition_system"),
            Some("http://terminology.hl7.org/CodeSystem/discharge-disposition")
        );
        assert_tenant_and_lineage(&batch, 1_683_909_000_000_000, None);
    }

    #[test]
    fn a_condition_row_points_at_its_patient_and_encounter_and_keeps_every_coding() {
        // GIVEN a Condition coded in ICD-10-CM and SNOMED CT, whose encounter is a urn:uuid entry
        let raw = r#"{"resourceType":"Condition","id":"c1","meta":{"lastUpdated":"2023-05-11T00:00:00Z","versionId":"1"},
            "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
            "verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]},
            "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"encounter-diagnosis"}]}],
            "code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"A41.9"},
                              {"system":"http://snomed.info/sct","code":"91302008","display":"Sepsis"}]},
            "subject":{"reference":"Patient/p1"},"encounter":{"reference":"urn:uuid:0b7e-e1"},
            "onsetDateTime":"2023-05-10T11:15:00+02:00","abatementDateTime":"2023-06-01","recordedDate":"2023-05-11"}"#;

        // WHEN its row is written, the Bundle naming Encounter e1 as that urn:uuid
        let (table, batch) = written(raw, &[("0b7e-e1", "Encounter", "e1")]);

        // THEN one condition row whose references are the keys of its patient and encounter
        assert_eq!(table, SilverTable::Condition);
        assert_eq!((batch.num_rows(), batch.schema()), (1, table.schema()));
        assert_eq!(
            text(&batch, "condition_key"),
            Some(key("Condition", "c1").as_str())
        );
        assert_eq!(
            text(&batch, "patient_key"),
            Some(key("Patient", "p1").as_str())
        );
        assert_eq!(
            text(&batch, "encounter_key"),
            Some(key("Encounter", "e1").as_str())
        );
        // AND the preferred (SNOMED CT) coding, every coding as JSON, and its dates in UTC
        assert_eq!(text(&batch, "code_system"), Some("http://snomed.info/sct"));
        assert_eq!(text(&batch, "code"), Some("91302008"));
        assert_eq!(text(&batch, "code_display"), Some("Sepsis"));
        assert_eq!(
            text(&batch, "code_codings"),
            Some(
                r#"[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"A41.9"},{"system":"http://snomed.info/sct","code":"91302008"}]"#
            )
        );
        assert_eq!(text(&batch, "clinical_status"), Some("active"));
        assert_eq!(text(&batch, "verification_status"), Some("confirmed"));
        assert_eq!(text(&batch, "category"), Some("encounter-diagnosis"));
        // 2023-05-10T09:15:00Z, 2023-06-01T00:00:00Z, 2023-05-11T00:00:00Z
        assert_eq!(timestamp(&batch, "onset_at"), Some(1_683_710_100_000_000));
        assert_eq!(
            timestamp(&batch, "abatement_at"),
            Some(1_685_577_600_000_000)
        );
        assert_eq!(
            timestamp(&batch, "recorded_at"),
            Some(1_683_763_200_000_000)
        );
        assert_tenant_and_lineage(&batch, 1_683_763_200_000_000, Some("1"));
    }

    #[test]
    fn an_organization_row_holds_the_key_its_conditional_references_resolve_to() {
        // GIVEN an Organization with an identifier
        let raw = r#"{"resourceType":"Organization","id":"o1","meta":{"lastUpdated":"2023-05-11T00:00:00Z"},
            "identifier":[{"system":"https://github.com/synthetichealth/synthea","value":"hosp-1"}],
            "active":true,"name":"General Hospital",
            "type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/organization-type","code":"prov"}]}],
            "address":[{"line":["1 Hospital Rd"],"city":"Boston","state":"MA","postalCode":"02139"}]}"#;

        // WHEN its row is written
        let (table, batch) = written(raw, &[]);

        // THEN one organization row keyed by its pseudonym
        assert_eq!(table, SilverTable::Organization);
        assert_eq!((batch.num_rows(), batch.schema()), (1, table.schema()));
        assert_eq!(
            text(&batch, "organization_key"),
            Some(key("Organization", "o1").as_str())
        );
        // AND its identifier_key is what a conditional reference to it resolves to, %7C or |
        let context = context();
        let (uuids, references) = (HashMap::new(), RefCell::default());
        let resolver = Resolver {
            tenant: &context.tenant,
            pseudonymizer: &context.pseudonymizer,
            uuids: &uuids,
            references: &references,
            last_chance: true,
        };
        let conditional = RefTarget::Conditional {
            kind: "Organization",
            query: "identifier=https://github.com/synthetichealth/synthea%7Chosp-1".into(),
        };
        let Ok(referenced) = resolver.resolve(&conditional, "serviceProvider") else {
            panic!("a conditional reference always resolves")
        };
        assert_eq!(text(&batch, "identifier_key"), Some(referenced.as_str()));
        // AND its plain fields
        assert_eq!(text(&batch, "name"), Some("General Hospital"));
        assert_eq!(text(&batch, "type_code"), Some("prov"));
        assert!(column(&batch, "active").as_boolean().value(0));
        assert_eq!(text(&batch, "city"), Some("Boston"));
        assert_eq!(text(&batch, "state"), Some("MA"));
        assert_tenant_and_lineage(&batch, 1_683_763_200_000_000, None);
    }
}
