"""The lake's control files, as the Rust writer and the gold refresh keep them
(`functions/core/src/hudi/writer.rs`, `ingest.rs`, `gold/mod.rs`), through a small object-store
interface: a local directory here and in tests, S3 (conditional puts) in the Glue jobs.

How a Spark commit meets the Rust commit protocol
-------------------------------------------------
The Rust writer linearises commits by creating `_metriccare/commits/<table>/<seq>.json` with a
create-if-absent put after writing its files and before writing `.hoodie/<instant>.commit`; a
writer that finds the number taken by a commit touching the same file groups starts again from a
fresh snapshot. Gold's change detection reads the same sequence files to learn which tenants
changed. Hudi's Spark writer knows nothing of this protocol. So the job:

1. creates `hoodie.properties` exactly as the Rust writer would (create-if-absent), so a table the
   job creates first is one the Lambdas accept;
2. makes sure every bucket of the tenant partition already has a file group *with the Rust
   writer's file id* before Spark writes (`seed_missing_file_groups`: an empty base file committed
   through the Rust protocol). Hudi's bucket index reuses an existing file group of a bucket but
   gives a new one a random id, and the Rust writer only looks for its own derived id, so a file
   group Spark created would be invisible to it and a key could end up in two file groups;
3. after each Hudi commit, claims the next free sequence number with an entry of the Rust shape
   (`record_commit`), so gold sees the tenant change and the next Lambda writer sees the commit.

What this does not close: between Spark completing its commit and the job claiming the sequence
number, a Lambda writer that read its snapshot before the Spark commit can claim a number without
seeing a conflict, and one of the two merges then hides the other's rows in the shared file groups
(a lost update). Hudi's OCC (DynamoDB lock) protects concurrent Glue runs from each other and fails
a Spark commit when a Lambda commit to the same file groups completed during its write, but the
Lambdas do not take the Hudi lock. The job therefore *detects* the race after claiming its number
(`concurrent_overwrites`: a commit claimed in that window that merged one of the same file groups
while neither commit was based on the other) and fails loudly naming both instants, so the files
behind them can be ingested again. Closing it needs the Rust writer to take the same DynamoDB lock.
"""

import hashlib
import io
import json
import os
import zlib
from typing import NamedTuple, Protocol

from .deid import Pseudonymizer
from .fhir_time import hudi_instant, parse_hudi_instant
from .hudi_options import hoodie_properties_text, incompatibilities
from .tables import META_COLUMNS, PARTITION_FIELD, TableSpec, avro_schema, compact_json

KEY_FINGERPRINT_PATH = "_metriccare/pseudonym-key.json"
GOLD_STATE_PATH = "_metriccare/gold/state.json"
GOLD_LOCK_PATH = "_metriccare/gold/refresh.lock"
GOLD_LOCK_LEASE_MICROS = 15 * 60 * 1_000_000
MAX_ATTEMPTS = 20


class LakeStore(Protocol):
    """The object-store operations the protocol needs; keys are relative to the lake root."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def create(self, key: str, data: bytes) -> bool:
        """Create-if-absent; False when the object already exists."""

    def list(self, prefix: str) -> list:
        """Keys of the objects directly inside the folder `prefix` (not deeper)."""

    def delete(self, key: str) -> None:
        """Removes an object; an absent one is not an error."""


class LocalLakeStore:
    """A lake in a local directory, laid out as the Rust embedded default lays it out."""

    def __init__(self, root: str):
        self.root = root

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def get(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
        return True

    def list(self, prefix: str) -> list:
        try:
            names = os.listdir(self._path(prefix))
        except FileNotFoundError:
            return []
        return sorted(f"{prefix}/{n}" for n in names if os.path.isfile(os.path.join(self._path(prefix), n)))

    def delete(self, key: str) -> None:
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass


class LakeError(Exception):
    """The lake cannot be written safely (another key, an incompatible table, endless conflicts)."""


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# The pseudonymisation key's fingerprint
# ---------------------------------------------------------------------------------------------


def check_key_fingerprint(store: LakeStore, pseudonymizer: Pseudonymizer) -> None:
    """Records the key's fingerprint on first write; refuses a lake written with another key (the
    same patient would get two keys and be counted twice)."""
    ours = pseudonymizer.fingerprint()
    record = compact_json({"algorithm": "HMAC-SHA256", "fingerprint": ours}).encode()
    if store.create(KEY_FINGERPRINT_PATH, record):
        return
    expected = json.loads(store.get(KEY_FINGERPRINT_PATH) or b"{}").get("fingerprint", "")
    if expected != ours:
        raise LakeError(f"the lake was written with another pseudonymisation key (fingerprint {expected}, "
                        f"this key {ours}): refusing to write")


# ---------------------------------------------------------------------------------------------
# Tables, timeline and file groups
# ---------------------------------------------------------------------------------------------


def ensure_table(store: LakeStore, spec: TableSpec) -> None:
    """Creates `hoodie.properties` as the Rust writer would, or checks the existing one."""
    path = f"{spec.base}/.hoodie/hoodie.properties"
    if store.create(path, hoodie_properties_text(spec).encode()):
        return
    differing = incompatibilities(spec, (store.get(path) or b"").decode("utf-8", "replace"))
    if differing:
        raise LakeError(f"table {spec.base} exists with other settings: {', '.join(differing)}")


def bucket_of(record_key: str, buckets: int) -> int:
    """Hudi's bucket of a key: `(List.of(key).hashCode() & Integer.MAX_VALUE) % buckets`."""
    string_hash = 0
    utf16 = record_key.encode("utf-16-be")
    for i in range(0, len(utf16), 2):
        string_hash = (string_hash * 31 + int.from_bytes(utf16[i:i + 2], "big")) & 0xFFFFFFFF
    list_hash = (31 + string_hash) & 0xFFFFFFFF
    return (list_hash & 0x7FFFFFFF) % max(buckets, 1)


def file_id(table: str, partition: str, bucket: int) -> str:
    """The Rust writer's file id of a bucket: Hudi's bucket-index shape, derived from table and
    partition so that every Rust writer agrees on it."""
    a = zlib.crc32(f"{table}/{partition}".encode())
    b = zlib.crc32(f"{partition}/{table}".encode())
    return f"{bucket:08d}-{a >> 16:04x}-{a & 0xffff:04x}-{b >> 16:04x}-{b:08x}{bucket & 0xffff:04x}-0"


def parse_base_file_name(name: str) -> tuple[str, str] | None:
    """`<fileId>_<writeToken>_<instant>.parquet` → (file id, instant)."""
    if not name.endswith(".parquet"):
        return None
    parts = name[:-len(".parquet")].split("_")
    if len(parts) != 3 or len(parts[2]) != 17:
        return None
    return parts[0], parts[2]


class Timeline(NamedTuple):
    completed: frozenset
    pending: frozenset

    @property
    def newest(self) -> str | None:
        return max(self.completed | self.pending, default=None)


def load_timeline(store: LakeStore, spec: TableSpec) -> Timeline:
    completed, pending = set(), set()
    for key in store.list(f"{spec.base}/.hoodie"):
        instant, _, action = _name(key).partition(".")
        if len(instant) != 17 or not instant.isdigit():
            continue
        if action == "commit":
            completed.add(instant)
        elif action in ("commit.requested", "inflight"):
            pending.add(instant)
    return Timeline(frozenset(completed), frozenset(pending - completed))


def committed_buckets(store: LakeStore, spec: TableSpec, partition: str) -> dict:
    """Bucket → file id of the committed file groups of a partition (a bucket's number is the first
    8 digits of its file id, as Hudi's bucket index reads it)."""
    completed = load_timeline(store, spec).completed
    buckets = {}
    for key in store.list(f"{spec.base}/{partition}"):
        parsed = parse_base_file_name(_name(key))
        if parsed and parsed[1] in completed and parsed[0][:8].isdigit():
            buckets[int(parsed[0][:8])] = parsed[0]
    return buckets


def empty_base_file(spec: TableSpec) -> bytes:
    """A Parquet base file with the table's file schema (meta columns first) and no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow_types = {"str": pa.string(), "int": pa.int32(), "long": pa.int64(), "double": pa.float64(),
                   "bool": pa.bool_(), "ts": pa.timestamp("us", tz="UTC")}
    fields = [pa.field(name, pa.string(), nullable=False) for name in META_COLUMNS]
    fields += [pa.field(c.name, arrow_types[c.kind], nullable=c.nullable) for c in spec.columns]
    buffer = io.BytesIO()
    pq.write_table(pa.schema(fields).empty_table(), buffer, compression="zstd")
    return buffer.getvalue()


def _partition_metadata(instant: str) -> bytes:
    return f"#partition metadata\ncommitTime={instant}\npartitionDepth=1\n".encode()


def commit_metadata(spec: TableSpec, stats_by_partition: dict) -> dict:
    """A commit's metadata as the Rust writer writes it (and Hudi readers read it)."""
    return {"partitionToWriteStats": stats_by_partition, "compacted": False,
            "extraMetadata": {"schema": avro_schema(spec)}, "operationType": "UPSERT"}


def _reserve_instant(store: LakeStore, spec: TableSpec, now: int) -> str:
    """An instant later than every instant on the timeline, unique among writers."""
    newest = load_timeline(store, spec).newest
    micros = max(now, (parse_hudi_instant(newest) if newest else 0) + 1000)
    while not store.create(f"{spec.base}/.hoodie/{hudi_instant(micros)}.commit.requested", b""):
        micros += 1000
    return hudi_instant(micros)


def _roll_back(store: LakeStore, spec: TableSpec, instant: str) -> None:
    """Deletes an uncommitted instant's files and timeline files (what the inflight lists)."""
    inflight = f"{spec.base}/.hoodie/{instant}.inflight"
    planned = json.loads(store.get(inflight) or b"{}")
    for stats in planned.get("partitionToWriteStats", {}).values():
        for stat in stats:
            store.delete(f"{spec.base}/{stat['path']}")
    store.delete(inflight)
    store.delete(f"{spec.base}/.hoodie/{instant}.commit.requested")


def seed_missing_file_groups(store: LakeStore, spec: TableSpec, tenant: str, buckets: set, now: int,
                             write_token: str) -> str | None:
    """Commits an empty base file, under the Rust writer's file id, for each of `buckets` of the
    tenant's partition that has no file group yet; returns the instant, or None when nothing was
    missing. Runs the Rust commit protocol: reserve instant, inflight, files, seal, sequence, `.commit`."""
    partition = f"{PARTITION_FIELD}={tenant}"
    empty = empty_base_file(spec)
    for _ in range(MAX_ATTEMPTS):
        missing = sorted(set(buckets) - committed_buckets(store, spec, partition).keys())
        if not missing:
            return None
        base_sequence = latest_sequence(store, spec)
        instant = _reserve_instant(store, spec, now)
        planned = []
        for bucket in missing:
            fid = file_id(spec.name, partition, bucket)
            planned.append((fid, f"{partition}/{fid}_{write_token}_{instant}.parquet"))
        store.put(f"{spec.base}/.hoodie/{instant}.inflight", compact_json({
            "partitionToWriteStats": {partition: [{"fileId": fid, "path": path, "partitionPath": partition}
                                                  for fid, path in planned]},
            "compacted": False, "extraMetadata": {}, "operationType": "UPSERT"}).encode())
        for _, path in planned:
            store.put(f"{spec.base}/{path}", empty)
        store.create(f"{spec.base}/{partition}/.hoodie_partition_metadata", _partition_metadata(instant))
        if not store.create(f"_metriccare/sealed/{spec.base}/{instant}", b""):
            # A cleaner took this instant for abandoned and removes its files: start again.
            continue
        stats = [{"fileId": fid, "path": path, "prevCommit": "null", "numWrites": 0, "numDeletes": 0,
                  "numUpdateWrites": 0, "numInserts": 0, "totalWriteBytes": len(empty), "totalWriteErrors": 0,
                  "partitionPath": partition, "fileSizeInBytes": len(empty)} for fid, path in planned]
        commit = commit_metadata(spec, {partition: stats})
        if claim_sequence(store, spec, base_sequence, instant, commit, stop_on_conflict=True) is None:
            # Another writer created file groups of this partition meanwhile: look again.
            _roll_back(store, spec, instant)
            continue
        store.put(f"{spec.base}/.hoodie/{instant}.commit", compact_json(commit).encode())
        return instant
    raise LakeError(f"{spec.base}: gave up seeding file groups after {MAX_ATTEMPTS} conflicting commits")


# ---------------------------------------------------------------------------------------------
# The commit sequence
# ---------------------------------------------------------------------------------------------


def sequence_key(spec: TableSpec, sequence: int) -> str:
    return f"_metriccare/commits/{spec.base}/{sequence:020d}.json"


def latest_sequence(store: LakeStore, spec: TableSpec) -> int:
    """The number of the table's latest commit (0 before the first)."""
    numbers = [int(n[:-5]) for n in map(_name, store.list(f"_metriccare/commits/{spec.base}"))
               if n.endswith(".json") and n[:-5].isdigit()]
    return max(numbers, default=0)


def commit_file_groups(commit: dict) -> list:
    """(partition, file id) of every file group a commit wrote, in partition order."""
    return sorted({(stat["partitionPath"], stat["fileId"])
                   for stats in commit.get("partitionToWriteStats", {}).values() for stat in stats})


def sequence_entry(sequence: int, instant: str, commit: dict) -> bytes:
    """A sequence file's content byte for byte in the Rust writer's shape (`SequenceEntry`): its
    fields in struct order, the commit inside with sorted keys (a serde_json value). It holds
    everything needed to complete the commit if its writer dies, and the file groups that gold and
    other writers look at."""
    groups = compact_json([list(g) for g in commit_file_groups(commit)])
    return (f'{{"sequence":{sequence},"instant":{compact_json(instant)},"file_groups":{groups},'
            f'"commit":{compact_json(commit)}}}').encode()


def claim_sequence(store: LakeStore, spec: TableSpec, base: int, instant: str, commit: dict,
                   stop_on_conflict: bool) -> int | None:
    """Claims the first free sequence number after `base` (create-if-absent). With
    `stop_on_conflict`, returns None when a commit claimed after `base` touched the same file
    groups (the caller's write is based on stale state)."""
    ours = set(commit_file_groups(commit))
    sequence = base + 1
    while True:
        if store.create(sequence_key(spec, sequence), sequence_entry(sequence, instant, commit)):
            return sequence
        other = json.loads(store.get(sequence_key(spec, sequence)))
        if other["instant"] == instant:
            return sequence  # a retried create whose first attempt did land
        if stop_on_conflict and ours & {tuple(g) for g in other["file_groups"]}:
            return None
        sequence += 1


def record_commit(store: LakeStore, spec: TableSpec, instant: str, commit: dict) -> int:
    """Claims a sequence number for a commit Hudi has completed (it cannot be undone, so a number is
    taken whatever was claimed meanwhile)."""
    return claim_sequence(store, spec, latest_sequence(store, spec), instant, commit, stop_on_conflict=False)


def _bases(commit: dict) -> dict:
    """(partition, file id) → the instant of the slice the commit merged onto ("null": none)."""
    return {(stat["partitionPath"], stat["fileId"]): stat.get("prevCommit") or "null"
            for stats in commit.get("partitionToWriteStats", {}).values() for stat in stats}


def _older(base: str, instant: str) -> bool:
    return base == "null" or base < instant


def concurrent_overwrites(store: LakeStore, spec: TableSpec, since: int, sequence: int, instant: str,
                          commit: dict) -> list:
    """Instants of commits claimed between `since` (the latest sequence before our write began) and
    our `sequence` that merged one of our file groups while neither commit was based on the other:
    the newer slice hides the other commit's rows (see the module docstring). A commit ours was
    merged onto (an earlier Glue run that recorded late) is not one."""
    ours = _bases(commit)
    overwriting = set()
    for number in range(since + 1, sequence):
        other = json.loads(store.get(sequence_key(spec, number)))
        for group, their_base in _bases(other["commit"]).items():
            if group in ours and _older(their_base, instant) and _older(ours[group], other["instant"]):
                overwriting.add(other["instant"])
    return sorted(overwriting)


def find_marked_commit(store: LakeStore, spec: TableSpec, marker_key: str, marker: str) -> tuple[str, dict] | None:
    """The completed commit whose extraMetadata carries `marker` (searched newest first)."""
    for instant in sorted(load_timeline(store, spec).completed, reverse=True):
        commit = json.loads(store.get(f"{spec.base}/.hoodie/{instant}.commit") or b"{}")
        if commit.get("extraMetadata", {}).get(marker_key) == marker:
            return instant, commit
    return None


# ---------------------------------------------------------------------------------------------
# Gold refresh: lock and state
# ---------------------------------------------------------------------------------------------


def _lock_expiry(lock: bytes) -> int | None:
    try:
        parsed = json.loads(lock)
    except ValueError:
        return None
    expires = parsed.get("expires_at") if isinstance(parsed, dict) else None
    return expires if isinstance(expires, int) and not isinstance(expires, bool) else None


def acquire_gold_lock(store: LakeStore, now: int) -> bytes | None:
    """Takes the gold refresh lock (create-if-absent, 15-minute lease), or an expired one over:
    two interleaved refreshes could commit a stale recompute over a fresh one. As the Rust refresh
    (gold/mod.rs take_over): of the refreshes that found a lock expired, the one that creates the
    takeover marker named after its content (holding the new lock) wins and writes the lock; a
    marker whose own lease has passed is taken over the same way (its taker stopped). Returns the
    lock's content, to release only this lock; None when another refresh holds it."""
    body = compact_json({"expires_at": now + GOLD_LOCK_LEASE_MICROS}).encode()
    if store.create(GOLD_LOCK_PATH, body):
        return body
    held = store.get(GOLD_LOCK_PATH)
    if held is None:  # released meanwhile: try once more
        return body if store.create(GOLD_LOCK_PATH, body) else None
    expires = _lock_expiry(held)
    if expires is not None and expires > now:
        return None
    while True:
        marker = f"{GOLD_LOCK_PATH}.taken-{hashlib.sha256(held).hexdigest()[:16]}"
        if store.create(marker, body):
            store.put(GOLD_LOCK_PATH, body)
            return body
        taken = store.get(marker)
        taken_expires = None if taken is None else _lock_expiry(taken)
        if taken is None or (taken_expires is not None and taken_expires > now):
            return None
        held = taken


def release_gold_lock(store: LakeStore, lock: bytes) -> None:
    """Deletes the lock if it is still this refresh's: one that outlived its lease may have been
    taken over, and deleting the new holder's lock would let a third refresh run beside it."""
    if store.get(GOLD_LOCK_PATH) == lock:
        store.delete(GOLD_LOCK_PATH)


def with_unannounced(state_text: bytes | None, tenants: list) -> bytes:
    """The gold state with `tenants` added to `unannounced`: the next gold refresh announces them
    (from the gold that is there), the watermark of silver sequences stays where it is."""
    state = json.loads(state_text) if state_text else {"silver_sequences": {}, "unannounced": []}
    state.setdefault("silver_sequences", {})
    state["unannounced"] = sorted(set(state.get("unannounced", [])) | set(tenants))
    return json.dumps(state, indent=2).encode()


def mark_unannounced(store: LakeStore, tenants: list) -> None:
    store.put(GOLD_STATE_PATH, with_unannounced(store.get(GOLD_STATE_PATH), tenants))
