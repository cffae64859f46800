"""The PySpark peer: Bulk-FHIR NDJSON to the four silver tables with Spark's DataFrame API.

Written as Spark's guides advise: an explicit schema (no inference pass), only built-in column
expressions (no Python UDF, so rows never leave the JVM), the HMAC-SHA256 pseudonym composed from
`sha2` over the ipad/opad construction so the keys equal MetricCare's, timestamps as µs in UTC, and
Parquet with zstd level 1. Same columns and values as the silver tables; not what MetricCare adds on
top (Hudi meta columns, de-duplication, the merge with committed rows, reject logging).

    python pyspark_flatten.py --tenant t1 --key-hex 00..ff --out DIR Patient=FILE Encounter=FILE ...
"""

import argparse
import json
import time

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

SNOMED = "http://snomed.info/sct"

CODING = T.StructType([T.StructField(n, T.StringType()) for n in ("system", "code", "display")])
CONCEPT = T.StructType([T.StructField("coding", T.ArrayType(CODING)),
                        T.StructField("text", T.StringType())])
REFERENCE = T.StructType([T.StructField("reference", T.StringType()),
                          T.StructField("display", T.StringType())])
ADDRESS = T.StructType([T.StructField(n, T.StringType())
                        for n in ("city", "state", "postalCode", "country")])
META = T.StructType([T.StructField("versionId", T.StringType()),
                     T.StructField("lastUpdated", T.StringType())])


def schema(*fields: tuple) -> T.StructType:
    common = [("resourceType", T.StringType()), ("id", T.StringType()), ("meta", META)]
    return T.StructType([T.StructField(name, kind) for name, kind in common + list(fields)])


SCHEMAS = {
    "Patient": schema(("gender", T.StringType()), ("birthDate", T.StringType()),
                      ("deceasedBoolean", T.BooleanType()), ("deceasedDateTime", T.StringType()),
                      ("address", T.ArrayType(ADDRESS)), ("maritalStatus", CONCEPT)),
    "Encounter": schema(("status", T.StringType()),
                        ("class", T.StructType([T.StructField("code", T.StringType()),
                                                T.StructField("system", T.StringType())])),
                        ("type", T.ArrayType(CONCEPT)), ("reasonCode", T.ArrayType(CONCEPT)),
                        ("subject", REFERENCE),
                        ("period", T.StructType([T.StructField("start", T.StringType()),
                                                 T.StructField("end", T.StringType())])),
                        ("serviceProvider", REFERENCE),
                        ("hospitalization", T.StructType(
                            [T.StructField("dischargeDisposition", CONCEPT)])),
                        ("partOf", REFERENCE)),
    "Condition": schema(("subject", REFERENCE), ("encounter", REFERENCE), ("code", CONCEPT),
                        ("clinicalStatus", CONCEPT), ("verificationStatus", CONCEPT),
                        ("category", T.ArrayType(CONCEPT)), ("onsetDateTime", T.StringType()),
                        ("onsetPeriod", T.StructType([T.StructField("start", T.StringType())])),
                        ("abatementDateTime", T.StringType()), ("recordedDate", T.StringType())),
    "Organization": schema(("identifier", T.ArrayType(T.StructType(
                               [T.StructField("system", T.StringType()),
                                T.StructField("value", T.StringType())]))),
                           ("name", T.StringType()), ("type", T.ArrayType(CONCEPT)),
                           ("active", T.BooleanType()), ("address", T.ArrayType(ADDRESS))),
}


class Pseudonyms:
    """HMAC-SHA256(key, len|tenant|len|type|len|id)[:16] as hex, in Spark SQL expressions."""

    def __init__(self, key: bytes, tenant: str):
        block = key.ljust(64, b"\0")
        self.ipad = F.lit(bytes(b ^ 0x36 for b in block))
        self.opad = F.lit(bytes(b ^ 0x5C for b in block))
        self.tenant = tenant

    @staticmethod
    def _prefixed(text: Column) -> Column:
        data = F.encode(text, "UTF-8")
        return F.concat(F.unhex(F.lpad(F.hex(F.octet_length(data)), 8, "0")), data)

    def __call__(self, kind: Column, source_id: Column) -> Column:
        message = F.concat(self._prefixed(F.lit(self.tenant)), self._prefixed(kind),
                           self._prefixed(source_id))
        inner = F.unhex(F.sha2(F.concat(self.ipad, message), 256))
        return F.substring(F.sha2(F.concat(self.opad, inner), 256), 1, 32)

    def reference(self, reference: Column) -> Column:
        """`Type/id` (relative or absolute, `_history` dropped) or a conditional `Type?query`."""
        conditional = F.regexp_extract(reference, r"^([A-Za-z]+)\?(.+)$", 2)
        literal = F.regexp_extract(reference, r"([A-Za-z]+)/([A-Za-z0-9.\-]+)(/_history/.*)?$", 0)
        kind_and_id = F.split(F.regexp_replace(literal, "/_history/.*$", ""), "/")
        query = F.regexp_replace(conditional, "(?i)%7C", "|")
        return (F.when(reference.isNull(), F.lit(None))
                .when(conditional != "", self(F.regexp_extract(reference, r"^([A-Za-z]+)\?", 1),
                                              F.concat(F.lit("?"), query)))
                .otherwise(self(kind_and_id[0], kind_and_id[1])))


def codings_column(concept: Column) -> Column:
    """Every coding with a code as MetricCare's `code_codings` JSON; null when there is none."""
    coded = F.filter(concept.getField("coding"), lambda c: c.getField("code").isNotNull())
    codings = F.transform(coded, lambda c: F.struct(c.getField("system").alias("system"),
                                                    c.getField("code").alias("code")))
    return F.when(F.size(codings) > 0, F.to_json(codings))


def preferred(concept: Column) -> Column:
    codings = concept.getField("coding")
    return F.coalesce(F.filter(codings, lambda c: c.getField("system") == SNOMED)[0], codings[0])


def first_code(concept: Column) -> Column:
    return preferred(concept).getField("code")


def ts(text: Column) -> Column:
    """FHIR dateTime (with a zone, or a date alone at midnight UTC) to a UTC timestamp."""
    return text.cast("timestamp")


def flatten(kind: str, key: Pseudonyms) -> list:
    c = F.col
    if kind == "Patient":
        address = c("address")[0]
        deceased_at = ts(c("deceasedDateTime"))
        return [c("gender").alias("gender"),
                F.substring(c("birthDate"), 1, 4).cast("int").alias("birth_year"),
                F.when(deceased_at.isNotNull(), F.lit(True)).otherwise(c("deceasedBoolean"))
                .alias("deceased"), deceased_at.alias("deceased_at"),
                F.nullif(F.substring(F.trim(address.getField("postalCode")), 1, 3), F.lit(""))
                .alias("postal_prefix"),
                address.getField("state").alias("state"),
                address.getField("country").alias("country"),
                first_code(c("maritalStatus")).alias("marital_status")]
    if kind == "Encounter":
        coding = preferred(c("type")[0])
        return [key.reference(c("subject.reference")).alias("patient_key"),
                c("status").alias("status"), c("class.code").alias("class_code"),
                c("class.system").alias("class_system"),
                coding.getField("code").alias("type_code"),
                F.coalesce(coding.getField("display"), c("type")[0].getField("text"))
                .alias("type_display"),
                first_code(c("reasonCode")[0]).alias("reason_code"),
                ts(c("period.start")).alias("period_start"),
                ts(c("period.end")).alias("period_end"),
                key.reference(c("serviceProvider.reference")).alias("hospital_key"),
                c("serviceProvider.display").alias("hospital_name"),
                first_code(c("hospitalization.dischargeDisposition"))
                .alias("discharge_disposition"),
                key.reference(c("partOf.reference")).alias("part_of_key"),
                preferred(c("hospitalization.dischargeDisposition")).getField("system")
                .alias("discharge_disposition_system")]
    if kind == "Condition":
        coding = preferred(c("code"))
        return [key.reference(c("subject.reference")).alias("patient_key"),
                key.reference(c("encounter.reference")).alias("encounter_key"),
                coding.getField("system").alias("code_system"),
                coding.getField("code").alias("code"),
                F.coalesce(coding.getField("display"), c("code.text")).alias("code_display"),
                first_code(c("clinicalStatus")).alias("clinical_status"),
                first_code(c("verificationStatus")).alias("verification_status"),
                first_code(c("category")[0]).alias("category"),
                ts(F.coalesce(c("onsetDateTime"), c("onsetPeriod.start"))).alias("onset_at"),
                ts(c("abatementDateTime")).alias("abatement_at"),
                ts(c("recordedDate")).alias("recorded_at"),
                codings_column(c("code")).alias("code_codings")]
    identifier = F.filter(c("identifier"), lambda i: i.getField("value").isNotNull())[0]
    address = c("address")[0]
    return [F.when(identifier.isNotNull(),
                   key(F.lit("Organization"),
                       F.concat(F.lit("?identifier="),
                                F.coalesce(identifier.getField("system"), F.lit("")), F.lit("|"),
                                identifier.getField("value"))))
            .alias("identifier_key"),
            c("name").alias("name"), first_code(c("type")[0]).alias("type_code"),
            c("active").alias("active"), address.getField("city").alias("city"),
            address.getField("state").alias("state")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--key-hex", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("inputs", nargs="+", help="TYPE=FILE, one per Bulk export file")
    args = parser.parse_args()
    spark = (SparkSession.builder.master("local[1]").appName("metriccare-peer")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
             .config("spark.sql.parquet.compression.codec", "zstd")
             .config("spark.hadoop.parquet.compression.codec.zstd.level", "1")
             .getOrCreate())
    started = time.perf_counter()
    key = Pseudonyms(bytes.fromhex(args.key_hex), args.tenant)
    now = F.current_timestamp()
    rows = 0
    for index, item in enumerate(args.inputs):
        kind, path = item.split("=", 1)
        frame = spark.read.schema(SCHEMAS[kind]).json(path).where(F.col("resourceType") == kind)
        table = frame.select(
            key(F.lit(kind), F.col("id")).alias(f"{kind.lower()}_key"),
            F.lit(args.tenant).alias("tenant_id"),
            *flatten(kind, key),
            F.coalesce(ts(F.col("meta.lastUpdated")), now).alias("last_updated"),
            F.col("meta.versionId").alias("version_id"),
            F.lit(f"file-{index}").alias("source_file_id"),
            now.alias("ingested_at"))
        table.write.mode("overwrite").parquet(f"{args.out}/{kind.lower()}")
        rows += spark.read.parquet(f"{args.out}/{kind.lower()}").count()
    print(json.dumps({"rows": rows, "seconds_after_start": time.perf_counter() - started}))
    spark.stop()


if __name__ == "__main__":
    main()
