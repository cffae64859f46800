"""Scale-out benchmark: one large NDJSON file through the Glue jobs' plumbing on local Spark, spread
over one executor thread and then two.

Generates an NDJSON export of one tenant with fhir-generator and joins its resource files into one
file, then loads it into a fresh lake with `local[1]` and again with `local[2]` (new Spark sessions),
through `metriccare_glue.spark.ingest_group` and the `metriccare` module installed in the running
interpreter (`.venv-glue`: the test command installs a debug build; for the figures install the
release wheel of scripts/build-glue-wheel.sh). Prints the seconds of staging (executors) and of the
commit (driver), MB/s and the speed-up of `local[2]`, and checks that both lakes hold the same silver
rows (counted per table).

    .venv-glue/bin/python bench/glue_split.py --patients 20000        # the README's figures
    .venv-glue/bin/python bench/glue_split.py --patients 200 --check  # the test command (tiny)
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "glue-scripts"))
TENANT = "tenant-01"
KEY_HEX = b"metriccare-benchmark-key-32bytes".hex()


def one_file(generator: Path, work: Path, patients: int) -> Path:
    subprocess.run([str(generator), "--out", str(work / "gen"), "--patients", str(patients), "--tenants", "1",
                    "--seed", "5"], check=True, capture_output=True)
    big = work / "everything.ndjson"
    with big.open("wb") as out:
        for part in sorted((work / "gen" / TENANT / "export-1").glob("*.ndjson")):
            data = part.read_bytes()
            out.write(data if data.endswith(b"\n") else data + b"\n")
    return big


def load(big: Path, lake_dir: Path, threads: int, split_bytes: int) -> tuple[float, dict]:
    import metriccare
    from pyspark.sql import SparkSession

    from metriccare_glue.spark import stage_all

    key = f"{TENANT}/big/{big.name}"
    (lake_dir / "raw" / TENANT / "big").mkdir(parents=True)
    shutil.copy2(big, lake_dir / "raw" / key)
    spark = (SparkSession.builder.master(f"local[{threads}]").appName(f"glue-split-{threads}")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        # Warm the executors' Python workers and the module, as a long-running job would have them.
        spark.sparkContext.parallelize(range(threads), threads).map(lambda _: __import__("metriccare")).count()
        lake = metriccare.Lake.local(str(lake_dir))
        started = time.perf_counter()
        group = lake.claim(TENANT, [key], split_bytes)
        error = stage_all(spark, lake, group.tasks())
        staged = time.perf_counter()
        [report] = group.commit()
        done = time.perf_counter()
    finally:
        spark.stop()
    if error is not None or report["result"] != "completed":
        sys.exit(f"local[{threads}]: {error or report}")
    rows = {t: metriccare.read_table(str(lake_dir), f"silver_{t}").num_rows
            for t in ("organization", "patient", "encounter", "condition")}
    return (staged - started, done - staged), rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=20000)
    parser.add_argument("--split-mb", type=float, default=0, help="span size (default: the file in 8 spans)")
    parser.add_argument("--profile", default="release", choices=["release", "debug"],
                        help="which fhir-generator build to use")
    parser.add_argument("--check", action="store_true", help="fail unless both runs load the same rows")
    args = parser.parse_args()

    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    generator = target / args.profile / "fhir-generator"
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "glue-scripts"), os.environ.get("PYTHONPATH")) if p)
    os.environ["METRICCARE_PSEUDONYM_KEY"] = KEY_HEX
    os.environ["METRICCARE_LOG"] = "error"
    work = Path(tempfile.mkdtemp(prefix="metriccare-glue-split-"))
    try:
        big = one_file(generator, work, args.patients)
        size = big.stat().st_size
        split = int(args.split_mb * 2**20) if args.split_mb else max(size // 8 + 1, 1)
        print(f"glue split: one NDJSON file of {size / 1e6:.1f} MB ({args.patients} patients), spans of "
              f"{split / 1e6:.2f} MB ({-(-size // split)} tasks)")
        results = {}
        for threads in (1, 2):
            (stage, commit), rows = load(big, work / f"lake-{threads}", threads, split)
            results[threads] = (stage, commit, rows)
            print(f"  local[{threads}]  stage {stage:6.2f} s ({size / 1e6 / stage:6.1f} MB/s)  commit {commit:6.2f} s  "
                  f"total {stage + commit:6.2f} s  rows {rows}")
        print(f"  speed-up of local[2] over local[1]: staging {results[1][0] / results[2][0]:.2f}x, "
              f"whole run {sum(results[1][:2]) / sum(results[2][:2]):.2f}x")
        if args.check and (results[1][2] != results[2][2] or not results[1][2]["patient"]):
            sys.exit(f"the two runs loaded different rows: {results[1][2]} != {results[2][2]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
