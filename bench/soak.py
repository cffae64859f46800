"""Soak benchmark: a tenant's lake after many small drops, as years of daily files would leave it.

Generates small Bundle files (3 patients each) of one tenant with fhir-generator, then:
  events   loads them one commit per file (METRICCARE_GROUP_FILES=1: each file its own event, the
           worst case), in chunks of `--chunk` files per `metriccare ingest`, and prints per chunk
           the seconds per file and the lake requests per file (GET/HEAD/PUT/LIST/DELETE);
  groups   loads the same files into a new lake in groups of 100 (one `ingest`), and prints the
           time per file and the speed-up over `events`.
After `events` it prints the lake's shape: silver Parquet on disk against the latest snapshot's,
files in each table's `.hoodie/`, and the control files in `_metriccare/`. Cleaning runs with
METRICCARE_RETAIN_HOURS=0 (after years of daily drops, all but the last day are older than the
24 h default) and the default 10 retained commits, unless `--retain-commits` says otherwise.

    .venv/bin/python bench/soak.py --files 2000 --chunk 200          # the README's figures
    .venv/bin/python bench/soak.py --files 40 --chunk 10 --profile debug --no-build   # test command

With `--check` (the test command's run) it fails unless the lake holds every patient once, each
`.hoodie/` holds at most 3 files per active instant, and the control files stay within their bound.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TENANT = "tenant-01"
KEY_HEX = b"metriccare-benchmark-key-32bytes".hex()
TABLES = ["patient", "encounter", "condition", "organization"]
ACTIVE_INSTANTS = 30
SEQUENCES_KEPT = 200
REQUESTS = re.compile(r"lake requests: GET (\d+), HEAD (\d+), PUT (\d+), LIST (\d+), DELETE (\d+)")


def run(binary, lake, files, env):
    started = time.perf_counter()
    done = subprocess.run([str(binary), "--lake", str(lake), "ingest", "--tenant", TENANT,
                           *map(str, files)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"ingest failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-2000:]}")
    counts = REQUESTS.search(done.stdout)
    requests = dict(zip(["get", "head", "put", "list", "delete"], map(int, counts.groups())))
    return seconds, requests


def lake_shape(lake):
    """Bytes of all silver Parquet, bytes of the latest slice of each file group, and file counts."""
    on_disk = latest = 0
    hoodie = {}
    for table in TABLES:
        base = lake / "silver" / table
        newest = {}
        for path in base.glob("tenant_id=*/*.parquet"):
            size = path.stat().st_size
            on_disk += size
            file_id, _, instant = path.stem.split("_")
            group = (path.parent.name, file_id)
            if group not in newest or newest[group][0] < instant:
                newest[group] = (instant, size)
        latest += sum(size for _, size in newest.values())
        hoodie[table] = sum(1 for p in (base / ".hoodie").iterdir() if p.is_file()) if base.exists() else 0
    control = defaultdict(int)
    for path in (lake / "_metriccare").rglob("*"):
        if path.is_file():
            control[path.relative_to(lake / "_metriccare").parts[0]] += 1
    return on_disk, latest, hoodie, dict(control)


def patients_in(binary, lake, env):
    done = subprocess.run([str(binary), "--lake", str(lake), "query", "--format", "json",
                           "SELECT count(*) AS n, count(DISTINCT patient_key) AS d FROM silver_patient"],
                          env=env, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.splitlines()[0])
    return row["n"], row["d"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=200, help="files per `ingest` in the events run")
    parser.add_argument("--retain-commits", type=int, default=10)
    parser.add_argument("--file-group-mb", type=float, default=128,
                        help="METRICCARE_FILE_GROUP_MB: the size at which a partition gets more file groups")
    parser.add_argument("--profile", default="release", choices=["release", "debug"])
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--check", action="store_true", help="fail unless the lake's shape is bounded")
    args = parser.parse_args()

    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not args.no_build:
        flags = ["--release"] if args.profile == "release" else []
        subprocess.run(["cargo", "build", "--quiet", *flags, "-p", "metriccare-cli", "-p", "fhir-generator"],
                       cwd=ROOT, check=True)
    metriccare, generator = target / args.profile / "metriccare", target / args.profile / "fhir-generator"

    work = Path(tempfile.mkdtemp(prefix="metriccare-soak-"))
    try:
        subprocess.run([str(generator), "--out", str(work / "gen"), "--patients", str(args.files * 3),
                        "--tenants", "1", "--format", "bundle", "--patients-per-bundle", "3", "--seed", "11"],
                       check=True, capture_output=True)
        files = sorted((work / "gen" / TENANT).rglob("*.json"))
        env = {**os.environ, "METRICCARE_PSEUDONYM_KEY": KEY_HEX, "METRICCARE_LOG": "error",
               "METRICCARE_RETAIN_HOURS": "0", "METRICCARE_RETAIN_COMMITS": str(args.retain_commits),
               "METRICCARE_FILE_GROUP_MB": str(args.file_group_mb)}

        print(f"soak: {len(files)} Bundle files of one tenant ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB), "
              f"{args.profile} build, retain {args.retain_commits} commits / 0 h, {ACTIVE_INSTANTS} active instants, "
              f"file groups of {args.file_group_mb:g} MB")
        print(f"\nevents: one commit per file, {args.chunk} files per run")
        print(f"{'files':>12} {'s/file':>8} {'GET':>6} {'HEAD':>6} {'PUT':>6} {'LIST':>6} {'DELETE':>7}  (per file)")
        lake = work / "events"
        per_chunk = []
        events_seconds = 0.0
        for start in range(0, len(files), args.chunk):
            chunk = files[start:start + args.chunk]
            seconds, requests = run(metriccare, lake, chunk, {**env, "METRICCARE_GROUP_FILES": "1"})
            events_seconds += seconds
            per_file = {k: v / len(chunk) for k, v in requests.items()}
            per_chunk.append((seconds / len(chunk), per_file, len(chunk)))
            print(f"{start + 1:>5}-{start + len(chunk):<6} {seconds / len(chunk):>8.4f} "
                  + " ".join(f"{per_file[k]:>6.1f}" for k in ["get", "head", "put", "list"])
                  + f" {per_file['delete']:>7.1f}")
        # The last full chunk: the generator may add a file or two beyond `--files`.
        full = [seconds for seconds, _, size in per_chunk if size == per_chunk[0][2]]
        first, last = per_chunk[0][0], full[-1]
        print(f"last full chunk / first chunk: {last / first:.2f}x the time per file (target <= 1.2x)")

        on_disk, latest, hoodie, control = lake_shape(lake)
        print(f"\nsilver Parquet on disk {on_disk / 1e6:.1f} MB, latest snapshot {latest / 1e6:.1f} MB "
              f"({on_disk / latest:.2f}x)")
        print("files in .hoodie/: " + ", ".join(f"{t} {n}" for t, n in hoodie.items()))
        groups = {t: len({p.name.split("_")[0] for p in (lake / "silver" / t).glob("tenant_id=*/*.parquet")})
                  for t in TABLES}
        print("file groups on disk (live and replaced): " + ", ".join(f"{t} {n}" for t, n in groups.items()))
        print("control files in _metriccare/: " + ", ".join(f"{k} {n}" for k, n in sorted(control.items())))

        grouped = work / "groups"
        groups_seconds, _ = run(metriccare, grouped, files, env)
        print(f"\ngroups of 100: {groups_seconds / len(files):.4f} s/file, "
              f"{events_seconds / groups_seconds:.1f}x faster than one commit per file")

        if args.check:
            rows, distinct = patients_in(metriccare, lake, env)
            grouped_rows, _ = patients_in(metriccare, grouped, env)
            assert rows == distinct == grouped_rows == args.files * 3, (rows, distinct, grouped_rows)
            for table, count in hoodie.items():
                assert count <= 3 * ACTIVE_INSTANTS + 1, f"{table}: {count} files in .hoodie"
            tables = len(TABLES)
            assert control.get("commits", 0) <= tables * (SEQUENCES_KEPT + 2), control
            assert control.get("sealed", 0) <= tables * ACTIVE_INSTANTS, control
            print("check: every patient once in both lakes; .hoodie/ and control files within their bounds")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
