"""Two ways into a lake directory, compared: the CLI (the ingest path a Lambda runs) and the Glue jobs'
plumbing over the `metriccare` module (driver and executors in local Spark)."""

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
from hudi import HudiTableBuilder

SILVER = ["organization", "patient", "encounter", "condition"]
GOLD = ["hospital_monthly", "hai_by_code", "mortality_yearly", "stay_detail"]
# Never compared: when and from which raw object a row was written (the two lakes' copies of a file
# are different objects, so their ledger ids differ).
NOT_COMPARED = {"ingested_at", "refreshed_at", "source_file_id"}


def cli(binary: str, lake: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([binary, "--lake", str(lake), *args], capture_output=True, text=True)
    # 3: some resources rejected; 4: some files quarantined. Both are outcomes under test.
    assert done.returncode in (0, 3, 4), f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def copy_raw(files: dict, lake: Path) -> None:
    """Places `{raw key: source path}` under the lake's raw/ (upload times kept)."""
    for key, source in files.items():
        target = lake / "raw" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def rows(lake: Path, layer: str, table: str) -> list:
    """The table's rows through the Apache Hudi reader, without Hudi's meta columns and the columns
    that are never compared, sorted."""
    base = lake / layer / table
    if not (base / ".hoodie" / "hoodie.properties").exists():
        return []
    batches = HudiTableBuilder.from_base_uri(str(base)).build().read()
    if not batches:
        return []
    found = pa.Table.from_batches(batches).to_pylist()
    kept = [{k: v for k, v in row.items() if not k.startswith("_hoodie") and k not in NOT_COMPARED}
            for row in found]
    return sorted(kept, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def snapshot(lake: Path, layers=("silver",)) -> dict:
    tables = {"silver": SILVER, "gold": GOLD}
    return {f"{layer}_{t}": rows(lake, layer, t) for layer in layers for t in tables[layer]}


def rejects(lake: Path) -> list:
    """Every rejected resource of the lake: (position, reason, resource), sorted."""
    found = []
    for path in sorted((lake / "quarantine" / "rejects").rglob("*.ndjson")):
        for line in path.read_text().splitlines():
            reject = json.loads(line)
            found.append((reject["position"], reject["reason"], json.dumps(reject["resource"], sort_keys=True)))
    return sorted(found)


def ledger(binary: str, lake: Path) -> list:
    return [json.loads(line) for line in cli(binary, lake, "status", "--json").stdout.splitlines()]


def generate(binary: str, out: Path, *args: str) -> Path:
    subprocess.run([binary, "--out", str(out), *args], check=True, capture_output=True)
    return out
