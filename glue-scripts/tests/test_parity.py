"""Parity with the Rust pipeline: the same raw files, the same key; the Spark pipeline's silver rows,
per-file ledger outcomes and gold tables must equal what `metriccare ingest` and `metriccare gold`
wrote, as the Apache Hudi reader reads it back.

Compared exactly: every data column, `source_file_id` included (the Spark side is given the Rust
ledger's ids), `last_updated` included unless it fell back to the ingest time, and every gold number
(rates too: the gold Lambda compares them exactly, so a last-bit difference would re-announce a
tenant). Not compared: `ingested_at` and `refreshed_at`, the two runs' own clocks.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_files import BYTE_ORDER_MARK, write_edge_files
from conftest import REPOSITORY
from metriccare_glue.gold import HaiValueSet, gold_frames
from metriccare_glue.pipeline import now_micros
from metriccare_glue.silver import rows_to_dataframe
from metriccare_glue.tables import GOLD, SILVER
from parity import RustLake, assert_same_rows, expand, silver_tables, spark_rows, spark_silver


@dataclass
class Case:
    lake: RustLake
    tenants: dict  # tenant → files in load order


def _generate(generator: str, out: Path, *options: str) -> Path:
    subprocess.run([generator, "--out", str(out), *options], check=True, capture_output=True)
    return out


def _tenant_folders(root: Path) -> dict:
    return {d.name: expand([d]) for d in sorted(root.iterdir()) if d.is_dir()}


def _case_sources(name: str, folder: Path, generator: str) -> dict:
    fixtures = REPOSITORY / "tests" / "fixtures"
    if name == "generated-ndjson":
        return _tenant_folders(_generate(generator, folder / "raw", "--patients", "60", "--tenants", "2",
                                         "--seed", "9", "--dirty"))
    if name == "generated-bundles":
        return _tenant_folders(_generate(generator, folder / "raw", "--format", "bundle", "--gzip", "--dirty",
                                         "--patients", "40", "--tenants", "2", "--seed", "5",
                                         "--patients-per-bundle", "7"))
    if name == "repository-fixtures":
        return {"synthea": expand([fixtures / "synthea", fixtures / "bulk"]),
                "edge": expand([fixtures / "edge-cases"])}
    if name == "utf8-bom":
        (folder / "raw").mkdir()
        (folder / "raw" / "bom.ndjson").write_bytes(BYTE_ORDER_MARK)
        return {"clinic-2": [folder / "raw" / "bom.ndjson"]}
    assert name == "reader-edge-cases"
    return {"clinic-1": write_edge_files(folder / "raw")}


@pytest.fixture(scope="session")
def cases(tmp_path_factory, metriccare_bin, generator_bin):
    """Each case built once: its raw files, loaded by the Rust CLI into a lake, gold refreshed."""
    built = {}

    def case(name: str) -> Case:
        if name not in built:
            folder = tmp_path_factory.mktemp(name)
            tenants = _case_sources(name, folder, generator_bin)
            lake = RustLake(metriccare_bin, folder / "lake")
            for tenant, files in tenants.items():
                lake.ingest(tenant, files)
            lake.gold()
            built[name] = Case(lake, tenants)
        return built[name]

    return case


@pytest.fixture(scope="session")
def spark_loads(spark, cases):
    """The Spark pipeline's load of each case's tenants, per read mode, computed once."""
    loads = {}

    def load(name: str, by_lines: bool) -> dict:
        if (name, by_lines) not in loads:
            case = cases(name)
            ledger = case.lake.ledger()
            loads[(name, by_lines)] = {tenant: spark_silver(spark, tenant, files, ledger, by_lines, now_micros())
                                       for tenant, files in case.tenants.items()}
        return loads[(name, by_lines)]

    return load


# Line-by-line reading only differs from whole-file reading for uncompressed NDJSON.
READ_MODES = [("generated-ndjson", False), ("generated-ndjson", True), ("generated-bundles", False),
              ("repository-fixtures", False), ("repository-fixtures", True),
              ("reader-edge-cases", False), ("reader-edge-cases", True),
              ("utf8-bom", False), ("utf8-bom", True)]
CASE_NAMES = ["generated-ndjson", "generated-bundles", "repository-fixtures", "reader-edge-cases"]


@pytest.mark.parametrize("name, by_lines", READ_MODES)
def test_silver_rows_equal_the_rust_rows(spark, cases, spark_loads, name, by_lines):
    case = cases(name)
    for tenant, (load, _) in spark_loads(name, by_lines).items():
        tables = silver_tables(spark, [load])
        for table, spec in SILVER.items():
            rust = [r for r in case.lake.rows(spec) if r["tenant_id"] == tenant]
            ours = spark_rows(tables[table], spec)
            assert_same_rows(ours, rust, spec, f"{tenant} {table}")
    assert any(case.lake.rows(spec) for spec in SILVER.values())


@pytest.mark.parametrize("name, by_lines", READ_MODES)
def test_every_file_has_the_rust_ledger_outcome(cases, spark_loads, name, by_lines):
    case = cases(name)
    ledger = case.lake.ledger()
    for tenant, (load, invalid) in spark_loads(name, by_lines).items():
        for index, path in enumerate(case.tenants[tenant]):
            entry = ledger[str(Path(path).resolve())]
            if entry["status"] == "QUARANTINED":
                assert index in invalid, f"{path.name}: Rust quarantined it ({entry['error']})"
                continue
            assert entry["status"] == "COMPLETED", f"{path.name}: {entry}"
            assert index not in invalid, f"{path.name}: {invalid.get(index)}"
            summary = load.summaries[index]
            assert (summary.counts, summary.deleted, summary.rejected) == \
                (entry["counts"], entry["deleted"], entry["rejected"]), path.name


def _value_set() -> HaiValueSet:
    return HaiValueSet.from_json((REPOSITORY / "functions" / "core" / "hai-value-set.json").read_text())


def _assert_gold_equal(gold: dict, lake: RustLake) -> None:
    for table, spec in GOLD.items():
        assert_same_rows(spark_rows(gold[table], spec), lake.rows(spec), spec, table)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_gold_from_the_spark_silver_equals_the_rust_gold(spark, cases, spark_loads, name):
    loads = [load for load, _ in spark_loads(name, False).values()]
    gold = gold_frames(spark, silver_tables(spark, loads), _value_set(), now_micros())
    _assert_gold_equal(gold, cases(name).lake)
    assert cases(name).lake.rows(GOLD["hospital_monthly"])


@pytest.mark.parametrize("name", CASE_NAMES)
def test_gold_from_the_rust_silver_equals_the_rust_gold(spark, cases, name):
    lake = cases(name).lake
    silver = {}
    for table, spec in SILVER.items():
        rows = [tuple(r[c] for c in spec.column_names) for r in lake.rows(spec)]
        silver[table] = rows_to_dataframe(spark, spec, spark.sparkContext.parallelize(rows, 1))
    _assert_gold_equal(gold_frames(spark, silver, _value_set(), now_micros()), lake)
