"""Whole-run benchmarks: MetricCare next to the tools a user would otherwise pick, in one run.

Generates its inputs with fhir-generator, then measures, each as a separate process:
  generator        fhir-generator writing Bulk NDJSON
  ndjson           `metriccare ingest` of one tenant's Bulk NDJSON export into a new lake, one core
  bundle           the same patients as one transaction Bundle, one core
  python peer      bench/peers/python_orjson.py (orjson + pyarrow) on the same NDJSON, one core
  pyspark peer     bench/peers/pyspark_flatten.py, Spark local[1], on the same NDJSON
  memory           `metriccare ingest` of one Encounter file at two sizes (peak RSS flat?)
  gold             `metriccare gold` after the NDJSON load, one core
  duckdb peer      bench/peers/duckdb_gold.py, DuckDB SQL with one thread, hospital_monthly from the
                   same silver files, one core
  many files       `metriccare watch --once` over many Bundle files of 4 tenants, 1 core vs 2
and prints MB/s, records/s and peak RSS (of the whole process tree) with the ratios. Before the
table it checks that the peers and MetricCare produced the same record keys (same pseudonyms), and
that the DuckDB peer's hospital_monthly equals gold's.

    .venv/bin/python bench/run.py --size small        # a few minutes; --size full for the README
    .venv/bin/python bench/run.py --size tiny --profile debug --no-build   # the test command's run

Needs: .venv (tests/python/requirements.txt) to run it, .venv-glue (pyspark) for the Spark peer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
TENANT = "tenant-01"
KEY_HEX = b"metriccare-benchmark-key-32bytes".hex()
TABLES = ["patient", "encounter", "condition", "organization"]

# Per size: patients of the side-by-side NDJSON/Bundle load, the two sizes (MB) of the one-file
# memory check, patients for the gold refresh (None: the side-by-side lake), and patients (over 4
# tenants, Bundles of 500) for the many-files run.
SIZES = {
    "tiny": {"patients": 60, "memory_mb": (1, 4), "gold_patients": None, "many_files": 80},
    "small": {"patients": 5_000, "memory_mb": (20, 100), "gold_patients": 50_000,
              "many_files": 8_000},
    # About 1 M inpatient stays for the gold refresh (the generator makes ~1.1 per patient).
    "full": {"patients": 20_000, "memory_mb": (100, 1000), "gold_patients": 900_000,
             "many_files": 20_000},
}


class Measurement:
    def __init__(self, seconds: float, peak_rss: int, output: str, peak_temp: int = 0):
        self.seconds, self.peak_rss, self.output = seconds, peak_rss, output
        self.peak_temp = peak_temp


def tree_pids(pid: int) -> list[int]:
    """A process and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def tree_peak_rss(pids: list[int]) -> int:
    """Peak resident bytes (VmHWM) of a process tree's processes (a Spark driver's JVM too).

    VmHWM belongs to the process's own address space, so unlike the rusage maxrss of a child it
    does not inherit the high-water mark of the Python process that forked it."""
    total = 0
    for current in pids:
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
    return total


def temp_bytes(pids: list[int], temp: Path) -> int:
    """Bytes a process tree holds in its temporary directory (an absolute, resolved path): the
    files still named there plus the unnamed ones (`tempfile::tempfile()` unlinks its file at once)
    it has open, each file once however many descriptors it has. Files come and go while this
    looks: one that is gone is not counted."""
    files: dict[tuple[int, int], int] = {}

    def add(path: str) -> None:
        try:
            found = os.stat(path)
        except OSError:
            return
        files[(found.st_dev, found.st_ino)] = found.st_size

    for folder, _, names in os.walk(temp):
        for name in names:
            add(os.path.join(folder, name))
    prefix = str(temp) + "/"
    for current in pids:
        try:
            descriptors = os.listdir(f"/proc/{current}/fd")
        except OSError:
            continue
        for fd in descriptors:
            try:
                target = os.readlink(f"/proc/{current}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefix) and target.endswith(" (deleted)"):
                add(f"/proc/{current}/fd/{fd}")
    return sum(files.values())


def run(command: list, cpus: set | None = None, env: dict | None = None,
        temp: Path | None = None) -> Measurement:
    """Runs a command to completion: wall time, and the peak RSS of its process tree sampled every
    10 ms (VmHWM only grows, so a sample misses at most the last 10 ms of growth). With `temp`,
    the command's TMPDIR is that directory and the peak of what it holds there is sampled too (a
    sample can miss a short-lived peak)."""
    merged_env = {**os.environ, **(env or {})}
    if temp:
        temp.mkdir(parents=True, exist_ok=True)
        # The descriptors' targets are absolute and resolved: so must the prefix be.
        temp = temp.resolve()
        merged_env["TMPDIR"] = str(temp)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=merged_env,
                               preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    peak, peak_temp, failure = [0], [0], []
    done = threading.Event()

    def sample():
        try:
            while not done.wait(0.01):
                pids = tree_pids(process.pid)
                peak[0] = max(peak[0], tree_peak_rss(pids))
                if temp:
                    peak_temp[0] = max(peak_temp[0], temp_bytes(pids, temp))
        except Exception as e:  # a sampler that stopped would report a peak too low
            failure.append(e)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.stdout.read().decode(errors="replace")
    # Stop sampling before reaping: a reaped pid could be reused by another process.
    done.set()
    sampler.join()
    process.wait()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(map(str, command))}\n{output[-4000:]}")
    if failure:
        sys.exit(f"the sampler failed ({failure[0]!r}): {' '.join(map(str, command))}")
    return Measurement(seconds, peak[0], output, peak_temp[0])


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


class Bench:
    def __init__(self, args, bin: Path):
        self.args = args
        self.bin = bin
        self.work = Path(tempfile.mkdtemp(prefix="metriccare-bench-", dir=args.work))
        self.size = SIZES[args.size]
        self.rows: list[dict] = []
        self.env = {"METRICCARE_PSEUDONYM_KEY": KEY_HEX, "METRICCARE_LOG": "error"}
        self.one_core = {min(os.sched_getaffinity(0))}

    def metriccare(self, lake: Path, *args) -> list:
        return [str(self.bin / "metriccare"), "--lake", str(lake), *map(str, args)]

    def generate(self, name: str, *args) -> tuple[Path, Measurement]:
        out = self.work / name
        measured = run([str(self.bin / "fhir-generator"), "--out", str(out), *map(str, args)])
        return out, measured

    def record(self, what: str, measured: Measurement, input_bytes: int | None = None,
               records: int | None = None, note: str = "") -> dict:
        row = {"what": what, "seconds": round(measured.seconds, 3),
               "mb_per_s": round(input_bytes / 1e6 / measured.seconds, 1) if input_bytes else None,
               "records_per_s": round(records / measured.seconds) if records else None,
               "input_mb": round(input_bytes / 1e6, 1) if input_bytes else None,
               # None: the process ended before the first 10 ms sample.
               "peak_rss_mb": round(measured.peak_rss / 2**20, 1) or None, "note": note}
        self.rows.append(row)
        rate = f", {row['mb_per_s']} MB/s" if row["mb_per_s"] else ""
        print(f"  {what}: {row['seconds']} s{rate}, {row['peak_rss_mb'] or '—'} MB peak RSS {note}",
              flush=True)
        return row

    def ndjson_export(self) -> tuple[Path, list[Path]]:
        patients = self.size["patients"]
        out, measured = self.generate("ndjson", "--patients", patients, "--tenants", 1)
        self.record("fhir-generator (Bulk NDJSON)", measured, dir_bytes(out))
        export = out / TENANT / "export-1"
        return export, sorted(export.glob("*.ndjson"))

    def silver_keys(self, lake: Path) -> dict:
        from hudi import HudiTableBuilder
        keys = {}
        for table in TABLES:
            batches = HudiTableBuilder.from_base_uri(str(lake / "silver" / table)).build().read()
            keys[table] = sorted(k for b in batches for k in b.column(f"{table}_key").to_pylist())
        return keys

    @staticmethod
    def parquet_keys(out: Path) -> dict:
        keys = {}
        for table in TABLES:
            path = out / f"{table}.parquet" if (out / f"{table}.parquet").exists() else out / table
            keys[table] = sorted(pq.read_table(path, columns=[f"{table}_key"])
                                 .column(0).to_pylist())
        return keys

    def run_all(self) -> None:
        export, files = self.ndjson_export()
        input_bytes = sum(f.stat().st_size for f in files)
        records = sum(lines(f) for f in files)

        lake = self.work / "lake-ndjson"
        ingest = run(self.metriccare(lake, "ingest", "--tenant", TENANT, export),
                     self.one_core, self.env)
        ours = self.record("MetricCare NDJSON → silver, 1 core", ingest, input_bytes, records)

        # Synthea-style transaction Bundles of 2,000 patients (about 22 MB each).
        bundle_out, _ = self.generate("bundle", "--patients", self.size["patients"], "--tenants", 1,
                                      "--format", "bundle", "--patients-per-bundle", 2000)
        bundle_files = sorted((bundle_out / TENANT / "export-1").glob("*.json"))
        bundle = run(self.metriccare(self.work / "lake-bundle", "ingest", "--tenant", TENANT,
                                     *bundle_files), self.one_core, self.env)
        self.record("MetricCare Bundle → silver, 1 core", bundle,
                    sum(f.stat().st_size for f in bundle_files), records)

        expected = self.silver_keys(lake)
        python_out = self.work / "peer-python"
        python = run([sys.executable, str(ROOT / "bench/peers/python_orjson.py"), "--tenant",
                      TENANT, "--key-hex", KEY_HEX, "--out", str(python_out), *map(str, files)],
                     self.one_core)
        peer = self.record("Python peer (orjson + pyarrow), 1 core", python, input_bytes, records)
        peer["ratio"] = round(python.seconds / ingest.seconds, 1)
        self.check_same_keys("Python peer", expected, self.parquet_keys(python_out))

        if self.args.skip_spark:
            print("  PySpark peer: skipped (--skip-spark)")
        else:
            spark_out = self.work / "peer-spark"
            spark_python = ROOT / ".venv-glue/bin/python"
            typed = [f"{f.stem}={f}" for f in files if f.stem in
                     ("Patient", "Encounter", "Condition", "Organization")]
            spark = run([str(spark_python), str(ROOT / "bench/peers/pyspark_flatten.py"),
                         "--tenant", TENANT, "--key-hex", KEY_HEX, "--out", str(spark_out),
                         *typed], env={"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON":
                                       str(spark_python)})
            self.record("PySpark peer, local[1]", spark, input_bytes, records,
                        "(process, JVM start included)")
            # The time inside the Spark session, without the JVM start: the fairer comparison.
            summary = next(line for line in spark.output.splitlines() if line.startswith('{"rows"'))
            in_session = json.loads(summary)["seconds_after_start"]
            session = Measurement(in_session, spark.peak_rss, "")
            row = self.record("PySpark peer, local[1]", session, input_bytes, records,
                              "(inside the session)")
            row["ratio"] = round(session.seconds / ingest.seconds, 1)
            self.check_same_keys("PySpark peer", expected, self.parquet_keys(spark_out))
        ours["ratio"] = 1.0

        self.gold(lake, export.parent.parent)
        self.memory(files)
        self.many_files()

    def gold(self, lake: Path, generated: Path) -> None:
        """The gold refresh of one tenant's silver, on one core; a bigger data set when the size
        asks for one (its load is set-up, not measured)."""
        if self.size["gold_patients"]:
            generated, _ = self.generate("gold", "--patients", self.size["gold_patients"],
                                         "--tenants", 1)
            lake = self.work / "lake-gold"
            run(self.metriccare(lake, "ingest", "--tenant", TENANT, generated / TENANT),
                env=self.env)
        stays = truth_inpatient_stays(json.loads((generated / "ground-truth.json").read_text()))
        measured = run(self.metriccare(lake, "gold"), self.one_core, self.env)
        ours = self.record(f"MetricCare gold refresh, {stays} inpatient stays, 1 core", measured)
        ours["ratio"] = 1.0
        # The DuckDB peer on the same silver files, one thread on the same core, judging open
        # windows at gold's refresh time.
        gold_rows = gold_hospital_monthly(lake, TENANT)
        epoch = datetime.fromtimestamp(0, timezone.utc)
        as_of = [f"--as-of={(row['refreshed_at'] - epoch) // timedelta(microseconds=1)}"
                 for row in gold_rows[:1]]
        peer_out = self.work / "peer-duckdb-hospital_monthly.parquet"
        duck = run([sys.executable, str(ROOT / "bench/peers/duckdb_gold.py"), "--lake", str(lake),
                    "--tenant", TENANT, "--out", str(peer_out), *as_of], self.one_core)
        summary = json.loads(next(line for line in duck.output.splitlines()
                                  if line.startswith('{"rows"')))
        self.record("DuckDB peer process, hospital_monthly in SQL, 1 thread", duck,
                    note=f"(Hudi file listing {summary['list_seconds']} s)")
        # The SQL alone (its Parquet reads included), without Python's start and the listing.
        in_sql = Measurement(summary["sql_seconds"], duck.peak_rss, "")
        peer = self.record("DuckDB peer SQL alone, hospital_monthly, 1 thread", in_sql,
                           note="(its Parquet reads included)")
        peer["ratio"] = round(in_sql.seconds / measured.seconds, 1)
        check_same_hospital_monthly(gold_rows, pq.read_table(peer_out).to_pylist())
        if self.size["gold_patients"]:
            shutil.rmtree(generated)
            shutil.rmtree(lake)

    def check_same_keys(self, who: str, expected: dict, actual: dict) -> None:
        for table in TABLES:
            if expected[table] != actual[table]:
                sys.exit(f"{who}: {table} keys differ from MetricCare's silver "
                         f"({len(actual[table])} vs {len(expected[table])} rows)")
        print(f"  {who}: the same {sum(map(len, expected.values()))} record keys as silver")

    def memory(self, files: list) -> None:
        """Peak RSS for one NDJSON file at two sizes: flat means the same."""
        encounters = next(f for f in files if f.stem == "Encounter")
        small_mb, large_mb = self.size["memory_mb"]
        source = encounters
        need = large_mb * 1_000_000
        if source.stat().st_size < need:
            # Grow the generator's file with more patients until it is big enough.
            patients = max(1, int(self.size["patients"] * need / source.stat().st_size * 1.1))
            out, _ = self.generate("memory", "--patients", patients, "--tenants", 1)
            source = out / TENANT / "export-1" / "Encounter.ndjson"
        for mb in (small_mb, large_mb):
            cut = self.work / f"Encounter-{mb}MB.ndjson"
            with open(source, "rb") as src, open(cut, "wb") as dst:
                written = 0
                for line in src:
                    if written + len(line) > mb * 1_000_000:
                        break
                    dst.write(line)
                    written += len(line)
            measured = run(self.metriccare(self.work / f"lake-mem-{mb}", "ingest", "--tenant",
                                           TENANT, cut), self.one_core, self.env)
            self.record(f"MetricCare one NDJSON file, {mb} MB", measured, cut.stat().st_size,
                        lines(cut))
            cut.unlink()
        shutil.rmtree(self.work / "memory", ignore_errors=True)

    def many_files(self) -> None:
        """Many Bundle files of four tenants through `watch --once`, on 1 core and on 2."""
        out, _ = self.generate("many", "--patients", self.size["many_files"], "--tenants", 4,
                               "--format", "bundle", "--patients-per-bundle", 500)
        input_bytes = dir_bytes(out) - (out / "ground-truth.json").stat().st_size
        results = {}
        cores = sorted(os.sched_getaffinity(0))
        for jobs in (1, 2):
            lake = self.work / f"lake-many-{jobs}"
            shutil.copytree(out, lake / "raw", ignore=shutil.ignore_patterns("ground-truth.json"))
            measured = run(self.metriccare(lake, "watch", "--once", "--jobs", jobs),
                           set(cores[:jobs]), self.env)
            results[jobs] = self.record(f"MetricCare many Bundle files, {jobs} core(s)", measured,
                                        input_bytes)
        if len(cores) >= 2:
            results[2]["ratio"] = round(results[2]["mb_per_s"] / results[1]["mb_per_s"], 2)

    def table(self) -> str:
        out = ["| what | input | time | throughput | records/s | peak RSS | × |",
               "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            out.append(f"| {r['what']} {r['note']} | {r['input_mb'] or '—'} MB | {r['seconds']} s | "
                       f"{r['mb_per_s'] or '—'} MB/s | {r['records_per_s'] or '—'} | "
                       f"{r['peak_rss_mb'] or '—'} MB | {r.get('ratio', '')} |")
        return "\n".join(out)


HOSPITAL_MONTHLY_COUNTS = ["stays", "deaths_30d", "mortality_episodes", "index_stays",
                           "readmissions_30d", "patient_days", "hai_count", "hai_stays",
                           "open_window_index", "open_window_mortality", "measure_version"]
HOSPITAL_MONTHLY_RATES = ["mortality_rate", "readmission_rate", "alos",
                          "hai_per_1000_patient_days"]


def gold_hospital_monthly(lake: Path, tenant: str) -> list[dict]:
    """MetricCare's gold hospital_monthly rows of one tenant (the latest Hudi snapshot)."""
    from hudi import HudiTableBuilder
    table = lake.resolve() / "gold" / "hospital_monthly"
    batches = HudiTableBuilder.from_base_uri(str(table)).build().read()
    return [row for batch in batches for row in batch.to_pylist() if row["tenant_id"] == tenant]


def check_same_hospital_monthly(gold: list[dict], peer: list[dict]) -> None:
    """Exits unless the peer's rows equal gold's: the same (hospital_id, month) cells and names,
    every count exactly, every rate within 1e-9."""
    def by_cell(rows):
        return {(r["hospital_id"], r["month"]): r for r in rows}
    ours, theirs = by_cell(gold), by_cell(peer)
    for cell in sorted(ours.keys() | theirs.keys()):
        row = f"hospital_monthly row hospital_id={cell[0]} month={cell[1]}"
        if cell not in theirs:
            sys.exit(f"DuckDB peer: {row} is in gold but not in the peer's result")
        if cell not in ours:
            sys.exit(f"DuckDB peer: {row} is in the peer's result but not in gold")
        a, b = ours[cell], theirs[cell]
        differ = [f"{c}: gold {a[c]!r}, peer {b[c]!r}" for c in ["hospital_name",
                  *HOSPITAL_MONTHLY_COUNTS] if a[c] != b[c]]
        differ += [f"{c}: gold {a[c]!r}, peer {b[c]!r}" for c in HOSPITAL_MONTHLY_RATES
                   if abs(a[c] - b[c]) > 1e-9]
        if differ:
            sys.exit(f"DuckDB peer: {row} differs from gold: " + "; ".join(differ))
    print(f"  DuckDB peer: the same {len(ours)} hospital_monthly rows as gold")


def truth_inpatient_stays(truth: dict) -> int:
    """Inpatient stays the generator produced (the stays of its monthly hospital metrics)."""
    return sum(month["stays"] for tenant in truth["tenants"]
               for month in tenant["hospital_monthly"])


def add_binary_options(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark script shares: which binaries, and where the scratch data goes."""
    parser.add_argument("--profile", choices=["release", "debug"], default="release")
    parser.add_argument("--no-build", action="store_true",
                        help="use the binaries already built instead of building them")
    parser.add_argument("--work", help="parent folder for the scratch data (default: $TMPDIR)")


def binaries(args) -> Path:
    """The folder of the `metriccare` and `fhir-generator` binaries, built first unless --no-build."""
    if not args.no_build:
        profile = ["--release"] if args.profile == "release" else []
        subprocess.run(["cargo", "build", "--quiet", *profile, "-p", "metriccare-cli",
                        "-p", "fhir-generator"], cwd=ROOT, check=True)
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / args.profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    add_binary_options(parser)
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    bench = Bench(args, binaries(args))
    print(f"== MetricCare benchmarks, size {args.size}, {args.profile} build, "
          f"{os.cpu_count()} cores, scratch {bench.work}", flush=True)
    try:
        bench.run_all()
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)
    print()
    print(bench.table())
    if args.json:
        Path(args.json).write_text(json.dumps(bench.rows, indent=2))


if __name__ == "__main__":
    main()
