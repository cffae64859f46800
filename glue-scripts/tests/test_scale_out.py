"""The Glue jobs on the Rust core: what local Spark (two executor threads) and the `metriccare` module
write equals what the ingest path writes, through the same ledger and commit protocol."""

import json
import subprocess
import time
from pathlib import Path

import metriccare
import pytest

import backfill
import ingest_large_file
from lakes import cli, copy_raw, generate, ledger, rejects, rows, snapshot
from metriccare_glue.spark import ingest_group, stage_all, stage_on_executor

TENANT = "tenant-01"
# Small spans, so that even a test file is cut into many (every cut lands mid-line somewhere).
SPLIT = 16 << 10


@pytest.fixture(scope="module")
def export(tmp_path_factory, generator_bin) -> Path:
    """A dirty NDJSON export of two tenants (rejects, duplicates, an incremental export-2 with deletes)."""
    return generate(generator_bin, tmp_path_factory.mktemp("export") / "out", "--patients", "120", "--tenants", "2",
                    "--dirty", "--seed", "7")


@pytest.fixture(scope="module")
def big_file(export, tmp_path_factory) -> Path:
    """One large NDJSON file: every resource file of tenant-01's first export, one after the other."""
    big = tmp_path_factory.mktemp("big") / "everything.ndjson"
    with big.open("wb") as out:
        for part in sorted((export / TENANT / "export-1").glob("*.ndjson")):
            data = part.read_bytes()
            out.write(data if data.endswith(b"\n") else data + b"\n")
    return big


def export_files(export: Path, tenant: str) -> dict:
    return {str(p.relative_to(export)): p for p in sorted((export / tenant).rglob("*")) if p.is_file()}


def test_a_large_file_split_over_executors_gives_the_ingest_paths_rows(tmp_path, spark, metriccare_bin, big_file):
    # GIVEN the same large NDJSON file in two lakes
    key = f"{TENANT}/big/everything.ndjson"
    glue_dir, cli_dir = tmp_path / "glue", tmp_path / "cli"
    for lake_dir in (glue_dir, cli_dir):
        copy_raw({key: big_file}, lake_dir)
    # WHEN the Glue plumbing loads it in many spans, and the CLI (the ingest path) loads it whole
    lake = metriccare.Lake.local(str(glue_dir))
    group = lake.claim(TENANT, [key], SPLIT)
    tasks = group.tasks()
    assert len(tasks) == -(-big_file.stat().st_size // SPLIT) > 10
    assert stage_all(spark, lake, tasks) is None
    [report] = group.commit()
    cli(metriccare_bin, cli_dir, "watch", "--once")
    # THEN both lakes hold exactly the same silver rows, read with the Apache Hudi reader
    assert report["result"] == "completed", report
    glue_rows, cli_rows = snapshot(glue_dir), snapshot(cli_dir)
    assert sum(map(len, glue_rows.values())) > 300
    assert glue_rows == cli_rows
    # AND the same rejects at the same lines of the file, and the same counts in the ledger
    assert rejects(glue_dir) and rejects(glue_dir) == rejects(cli_dir)
    [cli_entry] = ledger(metriccare_bin, cli_dir)
    glue_entry = lake.ledger_entry(report["ledger_id"])
    for field in ("status", "counts", "deleted", "rejected", "future_last_updated", "erased"):
        assert glue_entry[field] == cli_entry[field], field
    # AND nothing staged is left behind
    assert not list((glue_dir / "quarantine" / "staging").rglob("*.part"))
    # AND read_table gives the latest snapshot as a pyarrow.Table
    table = metriccare.read_table(str(glue_dir), "silver_patient")
    assert table.num_rows == len(glue_rows["silver_patient"]) > 0
    assert "patient_key" in table.column_names


def test_a_backfill_of_several_tenants_gives_the_clis_silver_and_gold(tmp_path, spark, metriccare_bin, export):
    # GIVEN both tenants' exports (two each, the second with newer versions and deletes) in two lakes
    files = {**export_files(export, "tenant-01"), **export_files(export, "tenant-02")}
    glue_dir, cli_dir = tmp_path / "glue", tmp_path / "cli"
    copy_raw(files, glue_dir)
    copy_raw(files, cli_dir)
    # WHEN the backfill job loads each tenant's folder (groups of 3 files), and the CLI watches the raw zone
    lake = metriccare.Lake.local(str(glue_dir))
    reports = []
    for tenant in ("tenant-01", "tenant-02"):
        reports += backfill.run(spark, lake, tenant, f"{tenant}/", split_bytes=SPLIT, group_files=3)
    cli(metriccare_bin, cli_dir, "watch", "--once")
    cli(metriccare_bin, cli_dir, "gold")
    # THEN every file was processed, and silver and gold are the CLI's
    assert len(reports) == len(files)
    assert {r["result"] for r in reports} <= {"completed", "quarantined"}
    glue, clis = snapshot(glue_dir, ("silver", "gold")), snapshot(cli_dir, ("silver", "gold"))
    assert glue["gold_hospital_monthly"] and glue["silver_encounter"]
    assert glue == clis
    # AND a second backfill finds every file done: nothing changes
    again = backfill.run(spark, lake, "tenant-01", "tenant-01", split_bytes=SPLIT)
    assert {r["result"] for r in again} == {"already_done"}
    assert snapshot(glue_dir, ("silver", "gold")) == glue


def test_a_lambda_commit_racing_a_glue_commit_on_one_tenant_loses_no_row(tmp_path, spark, metriccare_bin, export):
    # GIVEN one tenant's two exports: the first for the ingest path, the second (as a new tenant folder's
    # worth of files) for the Glue job, and a lake that loads both one after the other
    first = {k: p for k, p in export_files(export, "tenant-01").items() if "/export-1/" in k}
    second = {k.replace("tenant-02", "tenant-01", 1).replace("export-1", "from-02", 1): p
              for k, p in export_files(export, "tenant-02").items() if "/export-1/" in k}
    raced, sequential = tmp_path / "raced", tmp_path / "sequential"
    for lake_dir in (raced, sequential):
        copy_raw({**first, **second}, lake_dir)
    cli_files = [str(raced / "raw" / k) for k in first]
    glue_keys = sorted(second)
    # WHEN the CLI ingests the first files while the Glue plumbing commits the second, at the same time
    lake = metriccare.Lake.local(str(raced))
    racing = subprocess.Popen([metriccare_bin, "--lake", str(raced), "ingest", "--tenant", "tenant-01", *cli_files],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reports = ingest_group(spark, lake, "tenant-01", glue_keys, SPLIT)
    assert racing.wait() in (0, 3, 4)
    # AND the other lake loads the same files one path after the other
    cli(metriccare_bin, sequential, "ingest", "--tenant", "tenant-01", *[str(sequential / "raw" / k) for k in first])
    cli(metriccare_bin, sequential, "ingest", "--tenant", "tenant-01", *[str(sequential / "raw" / k) for k in second])
    # THEN no row is lost or doubled: the raced lake equals the sequential one
    assert {r["result"] for r in reports} <= {"completed", "quarantined"}
    assert snapshot(raced) == snapshot(sequential)


def test_an_executor_failing_mid_file_fails_the_file_and_the_retry_equals_a_clean_run(tmp_path, spark, big_file):
    # GIVEN the large file in two lakes, and a stage that fails on the file's second span
    key = f"{TENANT}/big/everything.ndjson"
    faulty_dir, clean_dir = tmp_path / "faulty", tmp_path / "clean"
    for lake_dir in (faulty_dir, clean_dir):
        copy_raw({key: big_file}, lake_dir)

    def fail_second_span(spec: str, task: str) -> str:
        if json.loads(task)["index"] == 1:
            raise RuntimeError("executor lost")
        return stage_on_executor(spec, task)

    lake = metriccare.Lake.local(str(faulty_dir))
    # WHEN a run stages with it
    [failed] = ingest_group(spark, lake, TENANT, [key], SPLIT, stage=fail_second_span)
    # THEN the file failed, nothing of it is visible, and the ledger says FAILED
    assert failed["result"] == "failed" and "span 1 was not staged" in failed["outcome"]["error"]
    assert snapshot(faulty_dir) == snapshot(tmp_path / "empty")
    assert lake.ledger_entry(failed["ledger_id"])["status"] == "FAILED"
    # AND the retried run equals a clean run, the ledger final, the staging empty
    [retried] = ingest_group(spark, lake, TENANT, [key], SPLIT)
    [clean] = ingest_group(spark, metriccare.Lake.local(str(clean_dir)), TENANT, [key], SPLIT)
    assert retried["result"] == clean["result"] == "completed"
    assert snapshot(faulty_dir) == snapshot(clean_dir)
    assert lake.ledger_entry(retried["ledger_id"])["status"] == "COMPLETED"
    assert lake.ledger_entry(retried["ledger_id"])["attempts"] == 2
    assert not list((faulty_dir / "quarantine" / "staging").rglob("*.part"))


def test_a_driver_dying_after_staging_is_taken_over_once_its_lease_expires(tmp_path, spark, big_file, monkeypatch):
    # GIVEN a run whose claims last two seconds, and the large file in two lakes
    key = f"{TENANT}/big/everything.ndjson"
    dead_dir, clean_dir = tmp_path / "dead", tmp_path / "clean"
    for lake_dir in (dead_dir, clean_dir):
        copy_raw({key: big_file}, lake_dir)
    monkeypatch.setenv("METRICCARE_LEASE_SECONDS", "2")
    lake = metriccare.Lake.local(str(dead_dir))
    # WHEN a driver claims the file, a second run starts while the claim holds, the first driver's
    # executors stage every span, then that driver dies
    claimed_at = time.monotonic()
    group = lake.claim(TENANT, [key], SPLIT)
    [early] = ingest_group(spark, lake, TENANT, [key], SPLIT)
    assert stage_all(spark, lake, group.tasks()) is None
    del group
    assert list((dead_dir / "quarantine" / "staging").rglob("*.part"))
    # AND a run starts after the lease expired
    time.sleep(max(0.0, claimed_at + 2.2 - time.monotonic()))
    [retried] = ingest_group(spark, lake, TENANT, [key], SPLIT)
    [clean] = ingest_group(spark, metriccare.Lake.local(str(clean_dir)), TENANT, [key], SPLIT)
    # THEN the early run left the file alone, the later one took it over: a clean run's rows
    assert early["result"] == "busy"
    assert retried["result"] == clean["result"] == "completed"
    assert snapshot(dead_dir) == snapshot(clean_dir)
    entry = lake.ledger_entry(retried["ledger_id"])
    assert (entry["status"], entry["attempts"]) == ("COMPLETED", 2)
    # AND the dead run's parts are gone with the new run's
    assert not list((dead_dir / "quarantine" / "staging").rglob("*.part"))


def test_a_bad_file_is_quarantined_as_the_ingest_path_would(tmp_path, spark, metriccare_bin):
    # GIVEN a file cut off in the middle of its last line, and a file of no FHIR at all, in two lakes
    files = {f"{TENANT}/cut.ndjson": tmp_path / "cut.ndjson", f"{TENANT}/junk.ndjson": tmp_path / "junk.ndjson"}
    line = json.dumps({"resourceType": "Patient", "id": "p1", "gender": "female"})
    files[f"{TENANT}/cut.ndjson"].write_text((line + "\n") * 2000 + line[:20])
    files[f"{TENANT}/junk.ndjson"].write_text('{"not": "fhir"}\n' * 3000)
    glue_dir, cli_dir = tmp_path / "glue", tmp_path / "cli"
    copy_raw(files, glue_dir)
    copy_raw(files, cli_dir)
    # WHEN both paths load them
    reports = ingest_group(spark, metriccare.Lake.local(str(glue_dir)), TENANT, sorted(files), SPLIT)
    cli(metriccare_bin, cli_dir, "watch", "--once")
    # THEN both files are quarantined with the ingest path's reasons
    glue_reasons = sorted(r["outcome"]["error"] for r in reports)
    cli_reasons = sorted(e["error"] for e in ledger(metriccare_bin, cli_dir))
    assert {r["result"] for r in reports} == {"quarantined"}
    assert glue_reasons == cli_reasons
    assert "truncated" in glue_reasons[0] or "truncated" in glue_reasons[1]


def test_odd_lines_cut_into_spans_give_the_ingest_paths_rows_rejects_and_verdicts(tmp_path, spark, metriccare_bin):
    # GIVEN a file that opens with a byte order mark and blank lines, with CRLF and LF endings, blank
    # lines, a byte order mark opening a later line, lines that are a JSON string, not JSON, or not
    # FHIR; and a plain NDJSON file whose name says gzip
    lines = []
    for i in range(1500):
        patient = json.dumps({"resourceType": "Patient", "id": f"p{i}", "gender": "female",
                              "meta": {"lastUpdated": "2024-03-01T00:00:00Z"}})
        lines.append({0: '"123"', 1: "\ufeff" + patient, 2: "not json", 3: "", 4: '{"no": "type"}'}.get((i + 5) % 17, patient))
    body = "\ufeff\n\n  " + "".join(line + ("\r\n" if i % 3 else "\n") for i, line in enumerate(lines))
    files = {f"{TENANT}/odd.ndjson": tmp_path / "odd.ndjson", f"{TENANT}/plain.ndjson.gz": tmp_path / "plain.ndjson.gz"}
    files[f"{TENANT}/odd.ndjson"].write_bytes(body.encode())
    files[f"{TENANT}/plain.ndjson.gz"].write_bytes(body.encode())
    glue_dir, cli_dir = tmp_path / "glue", tmp_path / "cli"
    copy_raw(files, glue_dir)
    copy_raw(files, cli_dir)
    # WHEN the Glue plumbing loads them in spans of 1 KiB, and the CLI loads them whole
    reports = ingest_group(spark, metriccare.Lake.local(str(glue_dir)), TENANT, sorted(files), 1 << 10)
    cli(metriccare_bin, cli_dir, "watch", "--once")
    # THEN the verdicts, the rows and the rejects (line numbers, reasons, resources) are the CLI's
    verdicts = {r["key"].rsplit("/", 1)[-1]: r["result"] for r in reports}
    cli_verdicts = {e["object"]["key"].rsplit("/", 1)[-1]: e["status"].lower() for e in ledger(metriccare_bin, cli_dir)}
    assert verdicts == cli_verdicts == {"odd.ndjson": "completed", "plain.ndjson.gz": "quarantined"}
    assert snapshot(glue_dir) == snapshot(cli_dir)
    assert len(rejects(glue_dir)) > 300
    assert rejects(glue_dir) == rejects(cli_dir)


def test_real_exports_through_the_glue_path_give_the_clis_silver(tmp_path, spark, metriccare_bin):
    # GIVEN exports nobody here wrote (a Synthea transaction Bundle and hospital file, Bulk NDJSON) and
    # the hand-written edge cases, in two lakes
    fixtures = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
    files = {f"{TENANT}/{p.relative_to(fixtures)}": p for folder in ("synthea", "bulk", "edge-cases")
             for p in sorted((fixtures / folder).rglob("*")) if p.is_file()}
    glue_dir, cli_dir = tmp_path / "glue", tmp_path / "cli"
    copy_raw(files, glue_dir)
    copy_raw(files, cli_dir)
    # WHEN the Glue plumbing loads them in spans of 4 KiB, and the CLI watches the raw zone
    reports = ingest_group(spark, metriccare.Lake.local(str(glue_dir)), TENANT, sorted(files), 4 << 10)
    cli(metriccare_bin, cli_dir, "watch", "--once")
    # THEN the verdicts and the silver rows are the CLI's; `last_updated` is compared only where the
    # resource has one (otherwise it is each run's ingest time)
    verdicts = sorted((r["key"], r["result"]) for r in reports)
    assert verdicts == sorted((e["object"]["key"], e["status"].lower()) for e in ledger(metriccare_bin, cli_dir))

    def without_ingest_times(lake):
        return {table: sorted((json.dumps({k: v for k, v in row.items() if k != "last_updated"}, default=str)
                               for row in rows)) for table, rows in snapshot(lake).items()}

    assert all(without_ingest_times(glue_dir).values())
    assert without_ingest_times(glue_dir) == without_ingest_times(cli_dir)


def test_the_large_file_job_waits_for_the_hand_off_and_leaves_a_final_item_alone(tmp_path, spark, big_file):
    # GIVEN a file the ingest path already completed
    key = f"{TENANT}/big/everything.ndjson"
    copy_raw({key: big_file}, tmp_path)
    lake = metriccare.Lake.local(str(tmp_path))
    [done] = ingest_group(spark, lake, TENANT, [key], SPLIT)
    # WHEN the large-file job is started for it
    report = ingest_large_file.run(spark, lake, TENANT, done["ledger_id"], SPLIT, wait_seconds=0)
    # THEN it does nothing
    assert report["result"] == "already_done"
    # AND for an item that never appears it gives up after its wait
    with pytest.raises(TimeoutError):
        ingest_large_file.run(spark, lake, TENANT, "0" * 24, SPLIT, wait_seconds=0)
