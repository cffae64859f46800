"""Lambda at scale: peak memory and temporary storage of the ingest path on one big NDJSON file and
of the gold path over about a million inpatient stays, measured with the release binaries on one core
and set against a 1,769 MB Lambda function (one full vCPU) with 10,240 MB of ephemeral storage.

The ingest and gold functions run the same core as `metriccare ingest` and `metriccare gold`; on AWS
the raw object is streamed from S3 instead of read from a file, and what the core writes to its
temporary directory (staged rows, Parquet files before upload) goes to the function's `/tmp`. So each
step runs the CLI with TMPDIR set to a scratch directory and samples, next to the peak RSS, the bytes
held there (named files and the unnamed ones the process has open).

    .venv/bin/python bench/lambda_scale.py                  # a 5 GB file and 900,000 patients
    .venv/bin/python bench/lambda_scale.py --ingest-mb 4 --gold-patients 60 --profile debug \\
        --no-build                                          # the test command's run (nothing timed)

Each run also checks the outcome: every line of the big file is a silver encounter, and gold has as
many stays as the generator's ground truth. Sizes are in MiB (2^20 bytes, as Lambda's), except the
input file's, in MB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

from run import (KEY_HEX, TENANT, add_binary_options, binaries, lines, run,
                 truth_inpatient_stays)

LAMBDA_MEMORY_MB = 1769
LAMBDA_EPHEMERAL_MB = 10240


class Scale:
    def __init__(self, args, bin: Path):
        self.args = args
        self.bin = bin
        self.work = Path(tempfile.mkdtemp(prefix="metriccare-lambda-scale-", dir=args.work))
        self.env = {"METRICCARE_PSEUDONYM_KEY": KEY_HEX, "METRICCARE_LOG": "error"}
        self.one_core = {min(os.sched_getaffinity(0))}
        self.rows: list[dict] = []

    def metriccare(self, lake: Path, *args) -> list:
        return [str(self.bin / "metriccare"), "--lake", str(lake), *map(str, args)]

    def generate(self, name: str, patients: int) -> Path:
        out = self.work / name
        run([str(self.bin / "fhir-generator"), "--out", str(out), "--patients", str(patients),
             "--tenants", "1", "--seed", "7"])
        return out

    def query_count(self, lake: Path, table: str) -> int:
        measured = run(self.metriccare(lake, "query", f"SELECT count(*) AS n FROM {table}",
                                       "--format", "json"), env=self.env)
        return json.loads(measured.output.strip().splitlines()[-1])["n"]

    def record(self, what: str, measured, input_bytes: int | None = None) -> None:
        row = {"what": what, "seconds": round(measured.seconds, 2),
               "input_mb": round(input_bytes / 1e6) if input_bytes else None,
               "peak_rss_mb": round(measured.peak_rss / 2**20),
               "peak_temp_mb": round(measured.peak_temp / 2**20)}
        row["fits"] = (row["peak_rss_mb"] <= LAMBDA_MEMORY_MB
                       and row["peak_temp_mb"] <= LAMBDA_EPHEMERAL_MB)
        self.rows.append(row)
        print(f"  {what}: {row['seconds']} s, {row['peak_rss_mb']} MB peak RSS, "
              f"{row['peak_temp_mb']} MB peak temporary storage", flush=True)

    def big_file(self) -> Path:
        """One Encounter NDJSON file of the asked size, cut at a line from a generated export
        large enough (sized from a small probe)."""
        want = self.args.ingest_mb * 1_000_000
        probe = self.generate("probe", 2000) / TENANT / "export-1" / "Encounter.ndjson"
        patients = math.ceil(2000 * want / probe.stat().st_size * 1.05)
        shutil.rmtree(self.work / "probe")
        source = self.generate("big", patients) / TENANT / "export-1" / "Encounter.ndjson"
        cut = self.work / "Encounter.ndjson"
        with open(source, "rb") as src, open(cut, "wb") as dst:
            written = 0
            for line in src:
                if written + len(line) > want:
                    break
                dst.write(line)
                written += len(line)
        shutil.rmtree(self.work / "big")
        if written < want * 0.99:
            sys.exit(f"the generated Encounter file gave {written:,} bytes of the {want:,} asked for")
        return cut

    def ingest(self) -> None:
        file = self.big_file()
        lake = self.work / "lake-ingest"
        measured = run(self.metriccare(lake, "ingest", "--tenant", TENANT, file), self.one_core,
                       self.env, temp=self.work / "tmp-ingest")
        self.record(f"ingest, one NDJSON file of {file.stat().st_size / 1e6:,.0f} MB", measured,
                    file.stat().st_size)
        expected, loaded = lines(file), self.query_count(lake, "silver_encounter")
        if loaded != expected:
            sys.exit(f"ingest: {loaded} silver encounters for {expected} lines")
        print(f"  checked: {loaded} silver encounters, one per line")
        shutil.rmtree(lake)
        file.unlink()

    def gold(self) -> None:
        generated = self.generate("gold", self.args.gold_patients)
        lake = self.work / "lake-gold"
        run(self.metriccare(lake, "ingest", "--tenant", TENANT, generated / TENANT), env=self.env)
        stays = truth_inpatient_stays(json.loads((generated / "ground-truth.json").read_text()))
        measured = run(self.metriccare(lake, "gold"), self.one_core, self.env,
                       temp=self.work / "tmp-gold")
        self.record(f"gold refresh, {stays:,} inpatient stays", measured)
        detailed = self.query_count(lake, "gold_stay_detail")
        if detailed != stays:
            sys.exit(f"gold: {detailed} stay_detail rows for {stays} inpatient stays")
        print(f"  checked: {detailed} stay_detail rows, the ground truth's stays")

    def table(self) -> str:
        out = [f"| what | time | peak RSS (limit {LAMBDA_MEMORY_MB:,} MB) | peak temporary storage "
               f"(limit {LAMBDA_EPHEMERAL_MB:,} MB) | fits |", "|---|---|---|---|---|"]
        for r in self.rows:
            out.append(f"| {r['what']} | {r['seconds']} s | {r['peak_rss_mb']:,} MB | "
                       f"{r['peak_temp_mb']:,} MB | {'yes' if r['fits'] else 'no'} |")
        return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ingest-mb", type=int, default=5000, help="size of the big NDJSON file")
    parser.add_argument("--gold-patients", type=int, default=900_000,
                        help="patients of the gold lake (about 1.15 inpatient stays each)")
    add_binary_options(parser)
    args = parser.parse_args()
    scale = Scale(args, binaries(args))
    print(f"== Lambda at scale, {args.profile} build, scratch {scale.work}", flush=True)
    try:
        scale.ingest()
        scale.gold()
    finally:
        shutil.rmtree(scale.work, ignore_errors=True)
    print()
    print(scale.table())


if __name__ == "__main__":
    main()
