"""Running the Rust pipeline and the Spark pipeline on the same files, and putting their rows side by
side. The Rust side is the `metriccare` CLI (embedded default: a lake directory, a SQLite ledger);
its tables are read back with the Apache Hudi reader (`hudi` on PyPI), as Athena would read them."""

import json
import subprocess
from functools import reduce
from pathlib import Path

import pyarrow as pa
from hudi import HudiTableBuilder

from conftest import KEY
from metriccare_glue.deid import Pseudonymizer
from metriccare_glue.fhir import InvalidFile
from metriccare_glue.silver import LoadContext, RawFile, load_silver, plan_raw_file, upserts_frame
from metriccare_glue.tables import SILVER, TableSpec

INGEST_TIME = "<ingest time>"
# Never compared: when the row was written (the two pipelines run at different times).
NOT_COMPARED = ("ingested_at", "refreshed_at")


class RustLake:
    def __init__(self, binary: str, root: Path):
        self.binary = binary
        self.root = root
        self.env = {"PATH": "/usr/bin:/bin", "METRICCARE_PSEUDONYM_KEY": KEY.hex(), "METRICCARE_LOG": "error"}

    def run(self, *args: str, allowed=(0,)) -> subprocess.CompletedProcess:
        done = subprocess.run([self.binary, "--lake", str(self.root), *args], env=self.env,
                              capture_output=True, text=True)
        assert done.returncode in allowed, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def ingest(self, tenant: str, files: list) -> None:
        # 3: some resources rejected; 4: some files quarantined. Both are outcomes under test.
        self.run("ingest", "--tenant", tenant, *map(str, files), allowed=(0, 3, 4))

    def gold(self) -> None:
        self.run("gold")

    def ledger(self) -> dict:
        """Ledger entries by the file's absolute path."""
        entries = [json.loads(line) for line in self.run("status", "--json").stdout.splitlines()]
        return {"/" + e["object"]["key"]: e for e in entries}

    def rows(self, spec: TableSpec) -> list:
        """The table's rows as the Hudi reader returns them, timestamps as µs integers."""
        base = self.root / spec.base
        if not (base / ".hoodie" / "hoodie.properties").exists():
            return []
        batches = HudiTableBuilder.from_base_uri(str(base)).build().read()
        if not batches:
            return []
        table = pa.Table.from_batches(batches)
        columns = {name: (table[name].cast(pa.int64()) if name in spec.timestamp_columns else table[name])
                   for name in spec.column_names}
        return pa.table(columns).to_pylist()


def spark_rows(frame, spec: TableSpec) -> list:
    """A DataFrame's rows in the table's columns, timestamps as µs integers."""
    from pyspark.sql import functions as F

    columns = [F.unix_micros(c).alias(c) if c in spec.timestamp_columns else F.col(c) for c in spec.column_names]
    return [row.asDict() for row in frame.select(columns).collect()]


def comparable(rows: list, spec: TableSpec) -> list:
    """Rows reduced to what both pipelines must agree on, sorted: `last_updated` that fell back to
    the ingest time (it equals `ingested_at`) becomes a marker, since two runs ingest at different
    times; the ingest time itself is dropped."""
    def reduce(row: dict) -> tuple:
        values = dict(row)
        if spec.layer == "silver" and values["last_updated"] == values["ingested_at"]:
            values["last_updated"] = INGEST_TIME
        return tuple((name, values[name]) for name in spec.column_names if name not in NOT_COMPARED)

    return sorted(map(reduce, rows), key=repr)


def assert_same_rows(ours: list, rust: list, spec: TableSpec, label: str) -> None:
    """Equal as sorted lists; on failure, the message shows only the rows one side lacks."""
    mine, theirs = comparable(ours, spec), comparable(rust, spec)
    if mine != theirs:
        only_ours = [dict(r) for r in mine if r not in theirs][:5]
        only_rust = [dict(r) for r in theirs if r not in mine][:5]
        raise AssertionError(f"{label}: {len(mine)} Spark rows, {len(theirs)} Rust rows\n"
                             f"only Spark: {only_ours}\nonly Rust: {only_rust}")


def expand(paths: list) -> list:
    """Files as `metriccare ingest` expands folders: every file below, sorted by path components,
    hidden names skipped."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted((p for p in path.rglob("*") if p.is_file()
                             and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                            key=lambda p: p.parts)
        else:
            found.append(path)
    return found


def raw_files(files: list, ledger: dict, read_by_lines: bool) -> tuple[list, dict]:
    """The Spark pipeline's RawFiles for `files`, planned as the Glue job plans them (or all read
    whole), with the Rust ledger's ids as lineage; and the files whose start is already invalid."""
    planned, invalid_at_start = [], {}
    for index, path in enumerate(files):
        data = Path(path).read_bytes()
        source_id = ledger[str(Path(path).resolve())]["id"]
        gz = str(path).endswith(".gz")
        try:
            uploaded_at = Path(path).stat().st_mtime_ns // 1000
            raw = plan_raw_file(index, str(path), gz, source_id, len(data), data[:2 << 20], data[-1:], uploaded_at)
        except (InvalidFile, ValueError) as e:  # the job fails such a file before Spark reads it
            invalid_at_start[index] = str(e)
            continue
        planned.append(raw if read_by_lines else RawFile(index, str(path), gz, source_id, uploaded_at=uploaded_at))
    return planned, invalid_at_start


def spark_silver(spark, tenant: str, files: list, ledger: dict, read_by_lines: bool, now: int):
    """The Spark pipeline's SilverLoad of `files` and the files it finds invalid."""
    planned, invalid = raw_files(files, ledger, read_by_lines)
    load = load_silver(spark, planned, LoadContext(tenant, now, Pseudonymizer(KEY)))
    return load, {**invalid, **load.invalid}


def silver_tables(spark, loads: list) -> dict:
    """Each silver table's surviving rows of one or more loads (one per tenant)."""
    return {table: reduce(lambda a, b: a.unionByName(b), [upserts_frame(spark, load, table) for load in loads])
            for table in SILVER}
