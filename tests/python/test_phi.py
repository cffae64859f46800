"""No PHI leaves the raw and quarantine zones. Every name, phone, e-mail, address line, postal code,
identifier value and original resource id of generated exports (NDJSON with dirt, gzipped Bundles),
and the name of a patient in a quarantined file's name, is absent from every silver and gold file
(values, statistics and commit metadata), the notifications, the report, SQL output and the logs at
their most verbose. The same source ids loaded for two tenants get unrelated pseudonyms.

The raw and quarantine zones hold PHI by design, the ledger records raw object keys, and the
console's progress lines name the paths the operator passed in: none of them is scanned."""
import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import Lake

# Shorter values could occur by chance (a three-letter given name inside a hospital's name).
MIN_LENGTH = 4
NOT_PHI_TYPES = {"Organization"}
NOT_SCANNED = {"raw", "quarantine", "ledger.sqlite", "secret"}


def generate(out: Path, *args):
    subprocess.run([os.environ["FHIR_GENERATOR_BIN"], "--out", str(out), *args], check=True, capture_output=True)


def resources(root: Path):
    """Every resource of the generated files, Bundle entries included."""
    for path in sorted(root.rglob("*")):
        if path.suffix not in {".ndjson", ".json", ".gz"} or path.name == "ground-truth.json":
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        text = data.decode()
        documents = [text] if path.name.endswith((".json", ".json.gz")) else text.splitlines()
        for document in documents:
            try:
                value = json.loads(document)
            except ValueError:
                continue  # the dirty export's non-JSON line
            if value.get("resourceType") == "Bundle":
                yield from (e["resource"] for e in value.get("entry", []) if "resource" in e)
            else:
                yield value


def phi_of(resource: dict) -> set:
    """The identifying values of one resource."""
    found = set()
    if "id" in resource:
        found.add(resource["id"])
    for identifier in resource.get("identifier", []):
        found.add(identifier.get("value"))
    if resource.get("resourceType") not in NOT_PHI_TYPES:
        for name in resource.get("name", []):
            found.update(name.get("given", []) + name.get("prefix", []) + name.get("suffix", []))
            found.update([name.get("family"), name.get("text")])
        for telecom in resource.get("telecom", []):
            found.add(telecom.get("value"))
        for address in resource.get("address", []):
            found.update(address.get("line", []))
            found.add(address.get("postalCode"))
        for extension in resource.get("extension", []):
            if extension.get("url", "").endswith("mothersMaidenName"):
                found.add(extension.get("valueString"))
    return {v for v in found if isinstance(v, str) and len(v) >= MIN_LENGTH}


def found(value: str, text: str) -> bool:
    """Whether `value` occurs in `text`; an all-digit value (a postal code) only as a whole token,
    not inside a longer number (a timestamp) or a hexadecimal pseudonym (`…a12509f…`)."""
    if not value.isdigit():
        return value in text
    return re.search(rf"(?<![0-9A-Za-z]){value}(?![0-9A-Za-z])", text) is not None


def scanned_texts(root: Path):
    """(where, text) for every file of the lake outside the PHI zones; Parquet decoded cell by cell,
    and its raw bytes too (footer statistics are not compressed)."""
    for path in sorted(root.rglob("*")):
        if not path.is_file() or NOT_SCANNED.intersection(path.relative_to(root).parts):
            continue
        where = str(path.relative_to(root))
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            cells = (str(v) for column in table.columns for v in column.to_pylist())
            yield where, "\n".join(cells)
            yield f"{where} (bytes)", path.read_bytes().decode("latin-1")
        else:
            yield where, path.read_bytes().decode("latin-1")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    base = tmp_path_factory.mktemp("phi")
    generate(base / "ndjson", "--patients", "40", "--tenants", "2", "--seed", "11", "--dirty")
    generate(base / "bundles", "--patients", "20", "--tenants", "1", "--seed", "12", "--format", "bundle", "--gzip")
    phi = set()
    for source in (base / "ndjson", base / "bundles"):
        for resource in resources(source):
            phi |= phi_of(resource)
    # A broken file named after a patient: quarantined, its name must reach no alert or log.
    patient = next(r for r in resources(base / "ndjson") if r["resourceType"] == "Patient")
    family = patient["name"][0]["family"]
    quarantined = base / "misc" / f"{family} discharge letter.json"
    quarantined.parent.mkdir()
    quarantined.write_text("not FHIR")

    lake = Lake(base / "lake")
    lake.env["METRICCARE_LOG"] = "debug"
    outputs = []  # (command, stdout, stderr)

    def run(*args, expect=0):
        done = lake.run(*args, expect=expect)
        outputs.append((" ".join(args), done.stdout, done.stderr))
        return done

    for tenant in ("tenant-01", "tenant-02"):
        run("ingest", "--tenant", tenant, str(base / "ndjson" / tenant), expect=3)
    # The same export again under another tenant: the same source ids.
    run("ingest", "--tenant", "twin-01", str(base / "ndjson" / "tenant-01"), expect=3)
    run("ingest", "--tenant", "bundles", str(base / "bundles" / "tenant-01"))
    run("ingest", "--tenant", "tenant-01", str(quarantined), expect=4)
    # The same files through the raw zone, as uploads, with a broken upload named after a patient.
    shutil.copytree(base / "ndjson" / "tenant-02", lake.root / "raw" / "uploads" / "tenant-02")
    shutil.copy(quarantined, lake.root / "raw" / "uploads" / quarantined.name)
    run("watch", "--once", expect=4)
    run("gold")
    run("report")
    for table in ("silver_patient", "silver_encounter", "gold_hospital_monthly"):
        run("query", "--format", "json", f"SELECT * FROM {table}")
    return lake, phi, family, outputs


def test_the_generated_input_has_phi_to_look_for(loaded):
    _, phi, family, _ = loaded
    assert len(phi) > 500 and family in phi


def test_no_phi_in_any_silver_or_gold_file_notification_or_report(loaded):
    lake, phi, _, _ = loaded
    scanned = dict(scanned_texts(lake.root))
    assert any(w.startswith("silver/") and w.endswith(".parquet") for w in scanned)
    assert any(w.startswith("gold/") for w in scanned)
    assert "notifications.jsonl" in scanned and "report.html" in scanned
    # A Parquet file's raw bytes are searched for text (footer statistics are not compressed), but
    # not for all-digit values: compressed pages hold digits side by side by chance (a postal prefix
    # "024" next to "76"), and every value of a column is in its decoded cells, searched above.
    leaks = [(where, value) for where, text in scanned.items() for value in phi
             if not (where.endswith(" (bytes)") and value.isdigit()) and found(value, text)]
    assert not leaks, leaks[:10]


def test_no_phi_in_the_logs_or_sql_output(loaded):
    _, phi, _, outputs = loaded
    # The JSON log lines; stderr also carries the console's progress lines, which name the files
    # the operator passed in (their own paths), as they typed them.
    logged = [(command, "\n".join(line for line in err.splitlines() if line.startswith("{"))) for command, _, err in outputs]
    assert sum(text.count("\n") for _, text in logged) > 20, "the debug logs were captured"
    # The console of the commands that do not list the operator's files.
    sql = [(command, out) for command, out, _ in outputs if command.split()[0] in {"query", "gold", "report"}]
    leaks = [(command, value) for command, text in logged + sql for value in phi if found(value, text)]
    assert not leaks, leaks[:10]


@pytest.mark.parametrize("table, column", [("patient", "patient_key"), ("encounter", "encounter_key"),
                                           ("encounter", "patient_key"), ("condition", "condition_key")])
def test_the_same_source_ids_get_unrelated_pseudonyms_in_two_tenants(loaded, table, column):
    lake, _, _, _ = loaded
    rows = lake.read(table).to_pylist()
    keys = {tenant: {r[column] for r in rows if r["tenant_id"] == tenant} for tenant in ("tenant-01", "twin-01")}
    assert len(keys["tenant-01"]) == len(keys["twin-01"]) > 0
    assert not keys["tenant-01"] & keys["twin-01"]
