"""The demo end to end through the CLI: gold read back with the Apache Hudi reader and checked against
the generator's ground truth, SQL over the lake, the HTML report, and the notifications."""
import json
import os
import subprocess

import pytest

GOLD = ["hospital_monthly", "hai_by_code", "mortality_yearly", "stay_detail"]
# The counts of a hospital-month, in the ground truth and in gold.
COUNTS = ("stays", "deaths_30d", "mortality_episodes", "index_stays", "readmissions_30d", "patient_days",
          "hai_count", "hai_stays", "open_window_index", "open_window_mortality")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from conftest import Lake

    lake = Lake(tmp_path_factory.mktemp("demo") / "lake")
    # Exit status 3: the dirty records were rejected, everything else loaded.
    done = lake.run("demo", "--patients", "90", "--tenants", "2", "--seed", "5", "--dirty", expect=3)
    return lake, done


def test_the_demo_prints_the_metrics_per_hospital(demo):
    lake, done = demo
    truth = json.loads((lake.root / "ground-truth.json").read_text())
    for tenant in truth["tenants"]:
        for hospital in tenant["hospitals"]:
            assert hospital["name"] in done.stdout
    assert "report:" in done.stdout


def test_gold_read_by_the_hudi_reader_equals_the_ground_truth(demo):
    lake, _ = demo
    truth = json.loads((lake.root / "ground-truth.json").read_text())
    monthly = lake.read_gold("hospital_monthly").to_pylist()
    for tenant in truth["tenants"]:
        got = sorted(
            tuple(r[c] for c in ("hospital_name", "month", *COUNTS))
            for r in monthly if r["tenant_id"] == tenant["tenant"])
        expected = sorted(tuple(r[c] for c in ("hospital_name", "month", *COUNTS)) for r in tenant["hospital_monthly"])
        assert got == expected
    yearly = lake.read_gold("mortality_yearly").to_pylist()
    for tenant in truth["tenants"]:
        got = sorted((r["year"], r["episodes"], r["deaths"]) for r in yearly if r["tenant_id"] == tenant["tenant"])
        assert got == sorted((r["year"], r["episodes"], r["deaths"]) for r in tenant["mortality_yearly"])
    hai = lake.read_gold("hai_by_code").to_pylist()
    for tenant in truth["tenants"]:
        got = sorted((r["month"], r["system"], r["code"], r["count"]) for r in hai if r["tenant_id"] == tenant["tenant"])
        assert got == sorted((r["month"], r["system"], r["code"], r["count"]) for r in tenant["hai_by_code"])


def test_sql_over_silver_and_gold(demo):
    lake, _ = demo
    truth = json.loads((lake.root / "ground-truth.json").read_text())
    out = lake.run("query", "--format", "json",
                   "SELECT tenant_id, count(*) AS patients FROM silver_patient GROUP BY tenant_id ORDER BY tenant_id")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows == [{"tenant_id": t["tenant"], "patients": t["resources"]["patient"]} for t in truth["tenants"]]
    out = lake.run("query", "--format", "csv",
                   "SELECT tenant_id, sum(stays) AS stays FROM gold_hospital_monthly GROUP BY tenant_id ORDER BY tenant_id")
    lines = out.stdout.splitlines()
    assert lines[0] == "tenant_id,stays"
    for line, tenant in zip(lines[1:], truth["tenants"]):
        assert line == f"{tenant['tenant']},{sum(r['stays'] for r in tenant['hospital_monthly'])}"
    table = lake.run("query", "SELECT count(*) AS n FROM gold_mortality_yearly").stdout
    assert "| n" in table
    # One row per stay behind the rates.
    out = lake.run("query", "--format", "csv",
                   "SELECT tenant_id, count(*) AS stays FROM gold_stay_detail GROUP BY tenant_id ORDER BY tenant_id")
    for line, tenant in zip(out.stdout.splitlines()[1:], truth["tenants"]):
        assert line == f"{tenant['tenant']},{sum(r['stays'] for r in tenant['hospital_monthly'])}"
    bad = lake.run("query", "SELECT * FROM no_such_table", expect=1)
    assert "no_such_table" in bad.stderr


def test_the_report_is_one_self_contained_file_with_the_three_views(demo):
    lake, _ = demo
    html = (lake.root / "report.html").read_text()
    tenants = json.loads((lake.root / "ground-truth.json").read_text())["tenants"]
    trends = ("30-day mortality (crude) by month of first discharge",
              "30-day readmission (crude) by month of last discharge",
              "Average length of stay (days) by month of discharge",
              "Hospital-acquired infections per 1,000 patient days by month of discharge")
    for view in ("Readmission rate by hospital", "30-day mortality by year", *trends):
        assert html.count(f'aria-label="{view}"') == len(tenants), view  # once per tenant
    # Each trend chart says what it counts and excludes.
    assert html.count('<p class="note">') == len(trends) * len(tenants)
    assert "against medical advice" in html and "14-day window" in html
    # The infection chart of each tenant with infections; the others say they have none.
    with_hai = sum(1 for tenant in tenants if tenant["hai_by_code"])
    assert html.count('aria-label="HAI by code"') == with_hai
    assert html.count("No hospital-acquired infections.") == len(tenants) - with_hai
    for external in ("<script", "src=", "href=", "@import", "url("):
        assert external not in html
    assert "Average length of stay" in html


def test_one_notification_per_refreshed_tenant_and_none_for_a_quiet_refresh(demo):
    lake, _ = demo
    def refreshed():
        lines = (lake.root / "notifications.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if '"gold.refreshed"' in line]
    before = refreshed()
    assert sorted(m["tenant_id"] for m in before) == ["tenant-01", "tenant-02"]
    for message in before:
        h = message["data"]["headline"]
        assert h["stays"] > 0
        # E-mail text: no counts; a rate resting on 1 to 10 deaths, episodes or survivors is not
        # shown (CMS cell-size rule, complementary cell included).
        rests_on = (h["deaths_30d"], h["mortality_episodes"], h["mortality_episodes"] - h["deaths_30d"])
        if any(1 <= n <= 10 for n in rests_on):
            assert "30-day mortality (crude): not shown" in message["text"]
        else:
            assert f"30-day mortality (crude): {h['mortality_rate'] * 100:.1f}%" in message["text"]
    out = lake.run("gold")
    assert "nothing written, no message" in out.stdout
    assert refreshed() == before


# The CLI as a user meets it in a shell.

def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(demo):
    # GIVEN output far bigger than a pipe's buffer (every pair of patients)
    lake, _ = demo
    sql = "SELECT a.patient_key, b.patient_key FROM silver_patient a, silver_patient b"
    process = subprocess.Popen([os.environ["METRICCARE_BIN"], "--lake", str(lake.root), "query", "--format", "csv", sql],
                               env=lake.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # WHEN the reader takes one line and goes away (`metriccare query ... | head -1`)
    assert process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    # THEN the command ends with success and no panic
    assert process.wait(timeout=60) == 0, stderr
    assert "panicked" not in stderr


def test_read_only_commands_never_create_a_key(lake, write):
    # GIVEN a lake written with METRICCARE_PSEUDONYM_KEY
    lake.ingest("t1", write("p.ndjson", [{"resourceType": "Patient", "id": "p1"}]))
    lake.run("gold")
    # WHEN query, status and report run without the key
    without_key = {k: v for k, v in lake.env.items() if k != "METRICCARE_PSEUDONYM_KEY"}
    for args in (["status"], ["query", "SELECT count(*) FROM silver_patient"], ["report"]):
        lake.run(*args, env=without_key)
    # THEN none of them wrote a key into the lake
    assert not (lake.root / "_metriccare" / "secret").exists()


def test_a_missing_input_is_named_and_leaves_no_trace(lake, tmp_path):
    # WHEN a file that is not there is ingested
    done = lake.run("ingest", "--tenant", "t1", str(tmp_path / "nope.json"), expect=1)
    # THEN the error names the input, not the configuration, and no lake was created
    assert "input" in done.stderr and "nope.json" in done.stderr and "No such file" in done.stderr
    assert "configuration" not in done.stderr
    assert not lake.root.exists()


def test_a_bad_tenant_id_is_bad_usage(lake, write):
    path = write("p.ndjson", [{"resourceType": "Patient", "id": "p1"}])
    for args in (["ingest", "--tenant", "Bad Tenant", str(path)], ["erase", "--tenant", "../x", "--patient", "p1"]):
        done = lake.run(*args, expect=2)
        assert "invalid tenant id" in done.stderr
    assert not lake.root.exists()


def test_profile_check_says_how_gold_will_read_the_tenant_or_names_the_wrong_key(lake, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"time_zone": "America/New_York", "inpatient_classes": [
        {"system": "http://hospital.example/fhir/class", "code": "INPATIENT"}]}))
    done = lake.run("profile", "check", str(good))
    assert "America/New_York" in done.stdout and "http://hospital.example/fhir/class|INPATIENT" in done.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"timezone": "America/New_York"}))
    done = lake.run("profile", "check", str(bad), expect=1)
    assert "timezone" in done.stderr
    # Checking writes nothing.
    assert not lake.root.exists()


def test_gold_with_a_refused_profile_exits_1_and_leaves_that_tenant_as_it_was(lake, write):
    stay = [{"resourceType": "Encounter", "id": "e1", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
             "subject": {"reference": "Patient/p1"},
             "period": {"start": "2024-01-02T10:00:00Z", "end": "2024-01-05T10:00:00Z"}}]
    lake.ingest("t1", write("stay.ndjson", stay))
    lake.run("gold")
    before = lake.read_gold("hospital_monthly").to_pylist()
    assert [r["stays"] for r in before] == [1]
    (lake.root / "config" / "tenants").mkdir(parents=True)
    (lake.root / "config" / "tenants" / "t1.json").write_text('{"time_zone": "Mars/Olympus"}')
    done = lake.run("gold", expect=1)
    assert "time_zone" in done.stderr and "t1" in done.stderr
    assert lake.read_gold("hospital_monthly").to_pylist() == before
