"""The lake's control files written by the job's code and read by the Rust pipeline, and the other
way round: the key fingerprint, tables and file groups seeded before a Spark write, the commit
sequence entries, the gold refresh lock and the hand-over of an unannounced tenant."""

import hashlib
import json
import shutil

import pytest

from conftest import KEY, REPOSITORY
from metriccare_glue.deid import Pseudonymizer
from metriccare_glue.lake import (GOLD_LOCK_PATH, LakeError, LocalLakeStore, acquire_gold_lock, check_key_fingerprint,
                                  commit_file_groups, committed_buckets, concurrent_overwrites, ensure_table, file_id,
                                  find_marked_commit, latest_sequence, load_timeline, mark_unannounced, record_commit,
                                  release_gold_lock, seed_missing_file_groups, sequence_entry, sequence_key)
from metriccare_glue.tables import GOLD, SILVER
from parity import RustLake

EDGE_CASES = REPOSITORY / "tests" / "fixtures" / "edge-cases" / "edge-cases.ndjson"
NOW = 1_800_000_000_000_000


@pytest.fixture
def lake_copy(rust_lake, tmp_path):
    """A private copy of the Rust-written lake, for tests that change it."""
    shutil.copytree(rust_lake.root, tmp_path / "lake")
    return RustLake(rust_lake.binary, tmp_path / "lake")


def test_the_key_fingerprint_is_the_one_rust_records(rust_lake, tmp_path):
    check_key_fingerprint(LocalLakeStore(str(rust_lake.root)), Pseudonymizer(KEY))
    with pytest.raises(LakeError, match="another pseudonymisation key"):
        check_key_fingerprint(LocalLakeStore(str(rust_lake.root)), Pseudonymizer(bytes(range(1, 33))))
    fresh = LocalLakeStore(str(tmp_path / "fresh"))
    check_key_fingerprint(fresh, Pseudonymizer(KEY))
    assert fresh.get("_metriccare/pseudonym-key.json") == (rust_lake.root / "_metriccare/pseudonym-key.json").read_bytes()


def test_sequence_entries_have_the_rust_shape(rust_lake):
    store = LocalLakeStore(str(rust_lake.root))
    for spec in [*SILVER.values(), *GOLD.values()]:
        for number in range(1, latest_sequence(store, spec) + 1):
            written = store.get(sequence_key(spec, number))
            instant = json.loads(written)["instant"]
            commit = json.loads(store.get(f"{spec.base}/.hoodie/{instant}.commit"))
            assert sequence_entry(number, instant, commit) == written


def test_seeded_file_groups_are_the_ones_the_rust_writer_then_fills(metriccare_bin, tmp_path):
    lake = RustLake(metriccare_bin, tmp_path / "lake")
    store = LocalLakeStore(str(lake.root))
    check_key_fingerprint(store, Pseudonymizer(KEY))
    specs = [*SILVER.values(), *GOLD.values()]
    seeded = {}
    for spec in specs:
        ensure_table(store, spec)
        seeded[spec.base] = seed_missing_file_groups(store, spec, "clinic-1", set(range(spec.buckets)), NOW, "1-2-0")
        assert committed_buckets(store, spec, "tenant_id=clinic-1") == {
            b: file_id(spec.name, "tenant_id=clinic-1", b) for b in range(spec.buckets)}
        assert latest_sequence(store, spec) == 1
    lake.ingest("clinic-1", [EDGE_CASES])
    lake.gold()
    for spec in specs:
        groups = {p.name.split("_")[0] for p in (lake.root / spec.base / "tenant_id=clinic-1").glob("*.parquet")}
        assert groups == {file_id(spec.name, "tenant_id=clinic-1", b) for b in range(spec.buckets)}, spec.base
        later = json.loads(store.get(sequence_key(spec, 2)))
        prev_commits = {s["prevCommit"] for stats in later["commit"]["partitionToWriteStats"].values() for s in stats}
        assert prev_commits == {seeded[spec.base]}, "the Rust commit merged onto the seeded file groups"
    # The same rows as a lake the Rust writer created alone.
    alone = RustLake(metriccare_bin, tmp_path / "alone")
    alone.ingest("clinic-1", [EDGE_CASES])
    alone.gold()
    for spec in specs:
        assert _content(lake, spec) == _content(alone, spec) and _content(lake, spec), spec.base


def _content(lake: RustLake, spec) -> list:
    """A table's rows without the columns that depend on when a run happened (the edge cases carry
    no meta.lastUpdated, so `last_updated` is the ingest time too)."""
    clock = ("ingested_at", "refreshed_at", "last_updated")
    return sorted(repr({k: v for k, v in row.items() if k not in clock}) for row in lake.rows(spec))


def test_nothing_is_seeded_where_the_rust_writer_created_the_file_groups(lake_copy):
    store = LocalLakeStore(str(lake_copy.root))
    spec = SILVER["patient"]
    before = load_timeline(store, spec)
    buckets = set(committed_buckets(store, spec, "tenant_id=clinic-1"))
    assert buckets
    assert seed_missing_file_groups(store, spec, "clinic-1", buckets, NOW, "1-2-0") is None
    assert load_timeline(store, spec) == before


def test_a_recorded_commit_is_seen_by_the_next_rust_writer_and_by_gold(lake_copy):
    """A commit recorded after the fact (as the job records a Spark commit) takes the next sequence
    number, and `metriccare gold` treats its tenant as changed."""
    store = LocalLakeStore(str(lake_copy.root))
    spec = SILVER["encounter"]
    latest = latest_sequence(store, spec)
    instant = max(load_timeline(store, spec).completed)
    commit = json.loads(store.get(f"{spec.base}/.hoodie/{instant}.commit"))
    commit["extraMetadata"]["_metriccare_run"] = "run-7"
    store.put(f"{spec.base}/.hoodie/{instant}.commit", json.dumps(commit).encode())
    assert find_marked_commit(store, spec, "_metriccare_run", "run-7") == (instant, commit)
    assert find_marked_commit(store, spec, "_metriccare_run", "run-8") is None
    assert record_commit(store, spec, instant, commit) == latest + 1
    state_before = json.loads(store.get("_metriccare/gold/state.json"))
    lake_copy.gold()
    state = json.loads(store.get("_metriccare/gold/state.json"))
    assert state["silver_sequences"]["encounter"] == latest + 1 > state_before["silver_sequences"]["encounter"]


def test_a_concurrent_commit_is_detected_unless_one_commit_is_based_on_the_other(tmp_path):
    """Sequence entries claimed between our write's start and our claim, touching our file group:
    a merge from a state without our commit, that our commit did not see either, hides rows; one
    based on our commit, or one our commit was merged onto, does not."""
    store = LocalLakeStore(str(tmp_path))
    spec = SILVER["patient"]
    partition, group = "tenant_id=t", file_id("patient", "tenant_id=t", 0)

    def commit(based_on: str) -> dict:
        return {"partitionToWriteStats": {partition: [{"fileId": group, "partitionPath": partition,
                                                       "prevCommit": based_on}]}}

    ours_instant, ours = "20240101000000005", commit("20240101000000001")
    store.put(sequence_key(spec, 1), sequence_entry(1, "20240101000000002", commit("20240101000000001")))  # raced
    store.put(sequence_key(spec, 2), sequence_entry(2, "20240101000000006", commit(ours_instant)))  # based on ours
    store.put(sequence_key(spec, 3), sequence_entry(3, "20240101000000001", commit("null")))  # ours is based on it
    assert commit_file_groups(ours) == [(partition, group)]
    assert concurrent_overwrites(store, spec, 0, 4, ours_instant, ours) == ["20240101000000002"]
    assert concurrent_overwrites(store, spec, 1, 4, ours_instant, ours) == []


def test_the_gold_lock_is_the_one_the_rust_refresh_takes(lake_copy):
    store = LocalLakeStore(str(lake_copy.root))
    first = acquire_gold_lock(store, NOW)
    assert first
    assert not acquire_gold_lock(store, NOW + 1), "held within its lease"
    assert "another refresh is running" in lake_copy.run("gold").stdout
    second = acquire_gold_lock(store, NOW + 16 * 60 * 1_000_000)
    assert second, "an expired lease is taken over"
    release_gold_lock(store, first)
    assert store.get(GOLD_LOCK_PATH) == second, "the overrun holder leaves the new holder's lock"
    release_gold_lock(store, second)
    assert store.get(GOLD_LOCK_PATH) is None
    store.put(GOLD_LOCK_PATH, json.dumps({"expires_at": 2**62}).encode())  # as a running Rust refresh leaves it
    assert not acquire_gold_lock(store, NOW)


def test_of_two_takeovers_of_one_expired_lock_only_one_wins(lake_copy):
    store = LocalLakeStore(str(lake_copy.root))
    expired = json.dumps({"expires_at": NOW}).encode()
    store.put(GOLD_LOCK_PATH, expired)
    assert acquire_gold_lock(store, NOW + 1)
    fresh = store.get(GOLD_LOCK_PATH)
    # A second refresh that had read the same expired lock: the marker is taken, the lock stays.
    store.put(GOLD_LOCK_PATH, expired)
    assert not acquire_gold_lock(store, NOW + 2)
    store.put(GOLD_LOCK_PATH, fresh)
    marker = f"{GOLD_LOCK_PATH}.taken-{hashlib.sha256(expired).hexdigest()[:16]}"
    assert store.get(marker) == fresh, "the marker the Rust refresh would create for that lock"


def test_an_unannounced_tenant_is_announced_by_the_next_rust_refresh(lake_copy):
    notifications = lake_copy.root / "notifications.jsonl"
    sent = notifications.read_text().splitlines()
    lake_copy.gold()
    assert notifications.read_text().splitlines() == sent, "nothing changed: nothing sent"
    mark_unannounced(LocalLakeStore(str(lake_copy.root)), ["clinic-1"])
    lake_copy.gold()
    new = [json.loads(line) for line in notifications.read_text().splitlines()[len(sent):]]
    assert [(m["event"], m["tenant_id"]) for m in new] == [("gold.refreshed", "clinic-1")]
    assert json.loads((lake_copy.root / "_metriccare/gold/state.json").read_text())["unannounced"] == []
