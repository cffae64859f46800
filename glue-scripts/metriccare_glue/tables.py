"""The lake's tables, as `functions/core/src/silver.rs` and `gold/tables.rs` define them: name,
record key, precombine field, bucket count and columns (name, type, nullability) in file order.

Everything that must agree with the Rust writer is derived from here: Spark schemas, the Avro
schema a commit carries, the Hudi write options and `hoodie.properties`.
"""

import json
from typing import NamedTuple

STR, INT, LONG, DOUBLE, BOOL, TS = "str", "int", "long", "double", "bool", "ts"

PARTITION_FIELD = "tenant_id"
META_COLUMNS = ("_hoodie_commit_time", "_hoodie_commit_seqno", "_hoodie_record_key",
                "_hoodie_partition_path", "_hoodie_file_name")


class Column(NamedTuple):
    name: str
    kind: str
    nullable: bool


class TableSpec(NamedTuple):
    layer: str
    name: str
    record_key: str
    precombine: str
    buckets: int
    columns: tuple

    @property
    def base(self) -> str:
        """The table's folder inside the lake, e.g. `silver/patient`."""
        return f"{self.layer}/{self.name}"

    @property
    def column_names(self) -> tuple:
        return tuple(c.name for c in self.columns)

    @property
    def timestamp_columns(self) -> tuple:
        return tuple(c.name for c in self.columns if c.kind == TS)


def _silver(name: str, record_key: str, specific: list) -> TableSpec:
    columns = [Column(record_key, STR, False), Column(PARTITION_FIELD, STR, False)]
    columns += [Column(n, k, nullable) for n, k, nullable in specific]
    columns += [Column("last_updated", TS, False), Column("version_id", STR, True),
                Column("source_file_id", STR, False), Column("ingested_at", TS, False)]
    # 4 buckets per tenant partition: fixed at creation, it decides which file group holds a key.
    return TableSpec("silver", name, record_key, "last_updated", 4, tuple(columns))


SILVER = {
    "patient": _silver("patient", "patient_key", [
        ("gender", STR, True), ("birth_year", INT, True), ("deceased", BOOL, True), ("deceased_at", TS, True),
        ("postal_prefix", STR, True), ("state", STR, True), ("country", STR, True), ("marital_status", STR, True),
    ]),
    "encounter": _silver("encounter", "encounter_key", [
        ("patient_key", STR, False), ("status", STR, True), ("class_code", STR, True), ("type_code", STR, True),
        ("type_display", STR, True), ("reason_code", STR, True), ("period_start", TS, True),
        ("period_end", TS, True), ("hospital_key", STR, True), ("hospital_name", STR, True),
        ("discharge_disposition", STR, True),
    ]),
    "condition": _silver("condition", "condition_key", [
        ("patient_key", STR, False), ("encounter_key", STR, True), ("code_system", STR, True), ("code", STR, True),
        ("code_display", STR, True), ("clinical_status", STR, True), ("verification_status", STR, True),
        ("category", STR, True), ("onset_at", TS, True), ("abatement_at", TS, True), ("recorded_at", TS, True),
    ]),
    "organization": _silver("organization", "organization_key", [
        ("identifier_key", STR, True), ("name", STR, True), ("type_code", STR, True), ("active", BOOL, True),
        ("city", STR, True), ("state", STR, True),
    ]),
}

SILVER_BY_RESOURCE_TYPE = {name.capitalize(): spec for name, spec in SILVER.items()}


def _gold(name: str, specific: list) -> TableSpec:
    columns = [Column("row_key", STR, False), Column(PARTITION_FIELD, STR, False)]
    columns += [Column(n, k, False) for n, k in specific]
    columns.append(Column("refreshed_at", TS, False))
    # Gold is small per tenant: one file group per tenant partition, rewritten whole.
    return TableSpec("gold", name, "row_key", "refreshed_at", 1, tuple(columns))


GOLD = {
    "hospital_monthly": _gold("hospital_monthly", [
        ("hospital_id", STR), ("hospital_name", STR), ("month", STR), ("stays", LONG), ("deaths_30d", LONG),
        ("mortality_rate", DOUBLE), ("index_stays", LONG), ("readmissions_30d", LONG), ("readmission_rate", DOUBLE),
        ("patient_days", LONG), ("alos", DOUBLE), ("hai_count", LONG), ("hai_stays", LONG),
        ("hai_per_1000_patient_days", DOUBLE),
    ]),
    "hai_by_code": _gold("hai_by_code", [("month", STR), ("code", STR), ("display", STR), ("count", LONG)]),
    "mortality_yearly": _gold("mortality_yearly", [("year", INT), ("stays", LONG), ("deaths", LONG), ("rate", DOUBLE)]),
}

_AVRO_TYPES = {STR: "string", INT: "int", LONG: "long", DOUBLE: "double", BOOL: "boolean",
               TS: {"type": "long", "logicalType": "timestamp-micros"}}


def avro_schema(spec: TableSpec) -> str:
    """The Avro schema a commit carries in `extraMetadata.schema`, byte for byte as the Rust writer
    writes it (serde_json: compact, keys sorted). The `_hoodie_*` fields are left out, as Hudi's
    own writers do."""
    fields = [{"name": c.name, "type": ["null", _AVRO_TYPES[c.kind]], "default": None} if c.nullable
              else {"name": c.name, "type": _AVRO_TYPES[c.kind]} for c in spec.columns]
    record = {"type": "record", "name": f"{spec.name}_record", "namespace": f"hoodie.{spec.name}", "fields": fields}
    return compact_json(record)


def compact_json(value) -> str:
    """JSON as serde_json's `to_string` writes a `json!` value: no spaces, object keys sorted."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
