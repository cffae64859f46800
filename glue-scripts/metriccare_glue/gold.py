"""The gold CMS metrics from silver, as Spark DataFrame operations with exactly the definitions of
`functions/core/src/gold/metrics.rs` and docs/metrics.md:

- dates are UTC calendar days of the timestamps (integer arithmetic on µs, no time zone involved);
- an inpatient stay is an encounter of class IMP/ACUTE/NONAC, status finished/completed, with a
  start and an end, end ≥ start; it is reported in the month (and year) of its discharge;
- LOS = max(1, discharge day − admission day);
- 30-day mortality: the patient's death day within [admission day, admission day + 30];
- index stay: no death day on or before the discharge day; readmitted: another stay of the same
  patient (any hospital) admitted strictly after this discharge instant and on or before discharge
  day + 30;
- HAI: a condition of the stay's encounter whose code is in the value set (system included), with
  onset day (onsetDateTime, else recordedDate) within [admission day + 2, discharge day];
- rates are 0 when their denominator is 0; the hospital name is the organization's (by key or
  identifier key), else the smallest serviceProvider display of the cell, else the hospital id.

Every table is computed for all tenants present in the input, grouped by tenant_id.
"""

import json
from importlib import resources
from typing import NamedTuple

from .fhir_time import MICROS_PER_DAY
from .tables import GOLD

INPATIENT_CLASSES = ("IMP", "ACUTE", "NONAC")
FINISHED_STATUSES = ("finished", "completed")
UNKNOWN_HOSPITAL = "unknown"


class HaiValueSet(NamedTuple):
    """The hospital-acquired infection value set: a code system and its codes with displays."""

    system: str
    codes: tuple  # ((code, display), ...) in file order

    @classmethod
    def from_json(cls, text: str) -> "HaiValueSet":
        """Reads the value-set file (`functions/core/hai-value-set.json`); refuses one without codes."""
        data = json.loads(text)
        codes = tuple((c["code"], c["display"]) for c in data["codes"])
        if not isinstance(data["system"], str) or not codes:
            raise ValueError("HAI value set: a system and at least one code are required")
        return cls(data["system"], codes)


def builtin_value_set() -> HaiValueSet:
    """The value set shipped with MetricCare (the package links `functions/core/hai-value-set.json`,
    the file the Rust gold embeds)."""
    return HaiValueSet.from_json(resources.files(__package__).joinpath("hai-value-set.json").read_text())


def _day(column: str):
    """UTC day number of a timestamp column: floor(µs / day), in integers (a double division would
    lose exactness far from 1970)."""
    from pyspark.sql import functions as F

    micros = f"unix_micros(`{column}`)"
    return F.expr(f"div({micros} - pmod({micros}, {MICROS_PER_DAY}), {MICROS_PER_DAY})")


def _ratio(numerator, denominator):
    from pyspark.sql import functions as F

    return F.when(denominator == 0, F.lit(0.0)).otherwise(numerator.cast("double") / denominator.cast("double"))


def _stays(encounter):
    """Inpatient stays with their admission and discharge instants (µs) and UTC days."""
    from pyspark.sql import functions as F

    return (encounter
            .where(F.col("class_code").isin(*INPATIENT_CLASSES) & F.col("status").isin(*FINISHED_STATUSES)
                   & F.col("period_start").isNotNull() & F.col("period_end").isNotNull()
                   & (F.col("period_end") >= F.col("period_start")))
            .select("tenant_id", "encounter_key", "patient_key",
                    F.coalesce("hospital_key", F.lit(UNKNOWN_HOSPITAL)).alias("hospital_id"),
                    F.col("hospital_name").alias("provider_display"),
                    F.unix_micros("period_start").alias("start"), F.unix_micros("period_end").alias("end"),
                    _day("period_start").alias("admission_day"), _day("period_end").alias("discharge_day")))


def _hospital_names(organization):
    """Organization name by organization_key and by identifier_key (what a conditional
    serviceProvider reference resolves to)."""
    from pyspark.sql import functions as F

    by_key = organization.select("tenant_id", F.col("organization_key").alias("hospital_id"), "name")
    by_identifier = organization.select("tenant_id", F.col("identifier_key").alias("hospital_id"), "name")
    return (by_key.unionByName(by_identifier)
            .where(F.col("hospital_id").isNotNull() & F.col("name").isNotNull())
            .groupBy("tenant_id", "hospital_id").agg(F.min("name").alias("organization_name")))


def _counted_hais(spark, stays, condition, value_set: HaiValueSet):
    """(stay, code, display) of every hospital-acquired infection counted for a stay."""
    from pyspark.sql import functions as F

    first_display: dict = {}
    for code, display in value_set.codes:
        first_display.setdefault(code, display)
    codes = spark.createDataFrame(list(first_display.items()), "code string, display string")
    infections = (condition
                  .where(F.col("encounter_key").isNotNull() & (F.col("code_system") == F.lit(value_set.system)))
                  .join(F.broadcast(codes), "code")
                  .withColumn("onset_at", F.coalesce("onset_at", "recorded_at"))
                  .where(F.col("onset_at").isNotNull())
                  .select("tenant_id", "encounter_key", "code", "display", _day("onset_at").alias("onset_day")))
    return (stays.select("tenant_id", "encounter_key", "admission_day", "discharge_day")
            .join(infections, ["tenant_id", "encounter_key"])
            .where((F.col("onset_day") >= F.col("admission_day") + 2) & (F.col("onset_day") <= F.col("discharge_day")))
            .select("tenant_id", "encounter_key", "code", "display"))


def _stay_facts(stays, counted, silver: dict):
    """One row per stay with everything the gold tables aggregate. Stays are identified by
    (tenant_id, encounter_key): a silver snapshot holds one row per record key."""
    from pyspark.sql import functions as F

    deaths = silver["patient"].select("tenant_id", "patient_key", _day("deceased_at").alias("death_day"))
    later = stays.select("tenant_id", "patient_key", F.col("start").alias("next_start"),
                         F.col("admission_day").alias("next_admission_day"))
    followed = (stays.join(later, ["tenant_id", "patient_key"])
                .where((F.col("next_start") > F.col("end"))
                       & (F.col("next_admission_day") <= F.col("discharge_day") + 30))
                .select("tenant_id", "encounter_key").distinct().withColumn("followed", F.lit(True)))
    hai_per_stay = counted.groupBy("tenant_id", "encounter_key").agg(F.count(F.lit(1)).alias("hai_count"))
    discharge_date = F.date_from_unix_date(F.col("discharge_day").cast("int"))
    death_day, admission_day = F.col("death_day"), F.col("admission_day")
    index = death_day.isNull() | (death_day > F.col("discharge_day"))
    return (stays
            .join(deaths, ["tenant_id", "patient_key"], "left")
            .join(followed, ["tenant_id", "encounter_key"], "left")
            .join(hai_per_stay, ["tenant_id", "encounter_key"], "left")
            .join(_hospital_names(silver["organization"]), ["tenant_id", "hospital_id"], "left")
            .select("tenant_id", "encounter_key", "hospital_id",
                    F.coalesce("organization_name", "provider_display").alias("name"),
                    F.date_format(discharge_date, "yyyy-MM").alias("month"),
                    F.year(discharge_date).alias("year"),
                    F.greatest(F.lit(1), F.col("discharge_day") - admission_day).cast("long").alias("los"),
                    (death_day.isNotNull() & (admission_day <= death_day) & (death_day <= admission_day + 30))
                    .cast("long").alias("death_30d"),
                    index.cast("long").alias("index_stay"),
                    (index & F.coalesce("followed", F.lit(False))).cast("long").alias("readmitted"),
                    F.coalesce("hai_count", F.lit(0)).cast("long").alias("hai_count")))


def _conform(spark, frame, table: str, refreshed_at: int):
    """The gold table with its exact column order, types and (non-null) nullability; a null where
    the Rust schema allows none fails here rather than in the table."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from .silver import spark_schema

    metrics = T.StructType([f for f in spark_schema(GOLD[table]).fields if f.name != "refreshed_at"])
    typed = frame.select([F.col(f.name).cast(f.dataType) for f in metrics.fields])
    return (spark.createDataFrame(typed.rdd, metrics)
            .withColumn("refreshed_at", F.timestamp_micros(F.lit(refreshed_at))))


def gold_frames(spark, silver: dict, value_set: HaiValueSet, refreshed_at: int) -> dict:
    """The three gold tables of every tenant in `silver` (DataFrames by table name: patient,
    encounter, condition, organization), `refreshed_at` in µs."""
    from pyspark.sql import functions as F

    stays = _stays(silver["encounter"]).cache()
    counted = _counted_hais(spark, stays, silver["condition"], value_set).cache()
    facts = _stay_facts(stays, counted, silver).cache()
    cells = (facts.groupBy("tenant_id", "hospital_id", "month")
             .agg(F.count(F.lit(1)).alias("stays"), F.sum("death_30d").alias("deaths_30d"),
                  F.sum("index_stay").alias("index_stays"), F.sum("readmitted").alias("readmissions_30d"),
                  F.sum("los").alias("patient_days"), F.sum("hai_count").alias("hai_count"),
                  F.sum(F.least(F.col("hai_count"), F.lit(1))).alias("hai_stays"), F.min("name").alias("name")))
    hospital_monthly = cells.select(
        F.concat_ws("|", "hospital_id", "month").alias("row_key"), "tenant_id", "hospital_id",
        F.coalesce("name", "hospital_id").alias("hospital_name"), "month", "stays", "deaths_30d",
        _ratio(F.col("deaths_30d"), F.col("stays")).alias("mortality_rate"), "index_stays", "readmissions_30d",
        _ratio(F.col("readmissions_30d"), F.col("index_stays")).alias("readmission_rate"), "patient_days",
        _ratio(F.col("patient_days"), F.col("stays")).alias("alos"), "hai_count", "hai_stays",
        _ratio(F.col("hai_count") * 1000, F.col("patient_days")).alias("hai_per_1000_patient_days"))
    hai_by_code = (counted.join(facts.select("tenant_id", "encounter_key", "month"), ["tenant_id", "encounter_key"])
                   .groupBy("tenant_id", "month", "code", "display").agg(F.count(F.lit(1)).alias("count"))
                   .select(F.concat_ws("|", "month", "code").alias("row_key"), "tenant_id", "month", "code",
                           "display", "count"))
    yearly = facts.groupBy("tenant_id", "year").agg(F.count(F.lit(1)).alias("stays"), F.sum("death_30d").alias("deaths"))
    mortality_yearly = yearly.select(F.col("year").cast("string").alias("row_key"), "tenant_id", "year", "stays",
                                     "deaths", _ratio(F.col("deaths"), F.col("stays")).alias("rate"))
    tables = {"hospital_monthly": hospital_monthly, "hai_by_code": hai_by_code, "mortality_yearly": mortality_yearly}
    return {name: _conform(spark, frame, name, refreshed_at) for name, frame in tables.items()}


def metric_columns(table: str) -> list:
    """The columns whose values are the metrics (all but the refresh time)."""
    return [c for c in GOLD[table].column_names if c != "refreshed_at"]


def gold_unchanged(new: dict, current: dict) -> bool:
    """Whether recomputed gold equals what gold holds (exactly, rates included, as the gold
    Lambda compares): then nothing is written and nothing is announced."""
    for table, frame in new.items():
        columns = metric_columns(table)
        fresh, held = frame.select(columns), current[table].select(columns)
        if fresh.exceptAll(held).limit(1).count() or held.exceptAll(fresh).limit(1).count():
            return False
    return True


def stale_rows(new, current):
    """Rows gold holds for the tenant that the recompute no longer has (a month or hospital that
    disappeared): removed, so the partition ends equal to the recompute."""
    return current.join(new.select("row_key"), "row_key", "left_anti")
