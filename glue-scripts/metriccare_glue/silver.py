"""Raw FHIR files to de-identified silver rows, with the semantics of the Rust loader
(`functions/core/src/ingest.rs` and the copy-on-write merge of `hudi/writer.rs`).

The pure part turns the items of a file into *operations* (an upsert row or a delete, per table and
key) and folds the operations of a key into the one that survives. The Spark part reads raw files
into items in parallel and applies the pure part per item and per key.

Order matters in three places, and every operation carries a sequence that reproduces the Rust order:

- a `urn:uuid:` reference resolves to the entry declared last *before* it in the file; when there
  is none yet the Rust loader keeps the resource pending until the end of the file and then
  resolves all its references against the last declarations; a pending row comes after all
  immediate rows;
- of two versions of a key the newer `last_updated` wins, a tie goes to the later row;
- a file's deletes are weighed after its upserts (a delete beats an upsert of equal ordering), and
  files are applied in load order. A delete leaves a tombstone: a version ordered at or before a
  delete of its key is ignored, whichever file it comes in (the Rust writer's tombstones; this
  package does not write them to the lake, see README).
"""

import bisect
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple

from .deid import Pseudonymizer
from .fhir import (SNIFF_BYTES, Delete, InvalidFile, Kept, Position, Record, RefTarget, Rejected, Skipped,
                   check_gzip_name, file_items, is_gzip, is_valid_id, line_is_cut_off, ndjson_line_items,
                   sniff_format, without_bom)
from .tables import SILVER, SILVER_BY_RESOURCE_TYPE, TableSpec

if TYPE_CHECKING:
    from pyspark import RDD

UPSERT_PHASE, DELETE_PHASE = 0, 1


class LoadContext(NamedTuple):
    """What every row of a run shares. `now` (µs) is the ingest time: `ingested_at`, the cap of
    `last_updated` and its value for a resource without `meta.lastUpdated`. `delete_order` is the
    ordering of one file's deletes (its upload time, as the Rust loader orders them; the ingest time
    when unknown)."""

    tenant: str
    now: int
    pseudonymizer: Pseudonymizer
    delete_order: int | None = None


class Operation(NamedTuple):
    """An upsert (`row` in the table's column order, timestamps as µs) or a delete (`row` None) of
    one key. `order` is the precombine value; `sequence` is the position in the Rust load order."""

    table: str
    key: str
    order: int
    sequence: tuple
    row: tuple | None


class UuidDeclaration(NamedTuple):
    """A Bundle entry whose fullUrl is `urn:uuid:<uuid>`: references to it resolve to this resource."""

    uuid: str
    position: Position
    resource_type: str
    source_id: str


def uuid_declaration(item) -> UuidDeclaration | None:
    if isinstance(item, Kept) and item.uuid is not None:
        return UuidDeclaration(item.uuid, item.position, item.record.resource_type, item.record.id)
    return None


def uuid_index(declarations: Iterable[UuidDeclaration]) -> dict:
    """`urn:uuid` → its declarations in file order."""
    index: dict = {}
    for declaration in declarations:
        index.setdefault(declaration.uuid, []).append(declaration)
    for declared in index.values():
        declared.sort(key=lambda d: d.position)
    return index


class Unresolved(Exception):
    """A `urn:uuid:` reference to an entry that is not in the file: the resource is rejected."""


class Resolver:
    """Turns one file's references into pseudonymous keys."""

    def __init__(self, context: LoadContext, uuids: dict):
        self.context = context
        self.uuids = uuids

    def key_of(self, resource_type: str, source_id: str) -> str:
        return self.context.pseudonymizer.pseudonym(self.context.tenant, resource_type, source_id)

    def resolve(self, target: RefTarget, position: Position | None) -> str:
        """The key a reference names. `position` is where the referencing resource sits; None
        means the end of the file (a pending resource). Raises LookupError when a `urn:uuid`
        has no declaration yet at `position`, Unresolved when the file has none at all."""
        if target.form == "literal":
            return self.key_of(target.resource_type, target.value)
        if target.form == "conditional":
            return self.context.pseudonymizer.conditional_key(self.context.tenant, target.resource_type, target.value)
        declared = self.uuids.get(target.value)
        if not declared:
            raise Unresolved("urn:uuid reference to a resource that is not in this Bundle")
        if position is None:
            chosen = declared[-1]
        else:
            # Declarations up to and including this entry (an entry may reference its own fullUrl).
            before = bisect.bisect_right([d.position for d in declared], position)
            if not before:
                raise LookupError(target.value)
            chosen = declared[before - 1]
        return self.key_of(chosen.resource_type, chosen.source_id)


def upsert_operation(record: Record, position: Position, resolver: Resolver, file_index: int,
                     ledger_id: str) -> Operation:
    """The silver row of a kept record. Raises Unresolved for a reference that cannot resolve."""
    spec = SILVER_BY_RESOURCE_TYPE[record.resource_type]
    context = resolver.context
    try:
        refs = {column: resolver.resolve(target, position) if target else None
                for column, target in record.refs.items()}
        pending = False
    except LookupError:
        # A reference to an entry further down: every reference resolves at the end of the file.
        refs = {column: resolver.resolve(target, None) if target else None for column, target in record.refs.items()}
        pending = True
    row = {
        spec.record_key: resolver.key_of(record.resource_type, record.id),
        "tenant_id": context.tenant,
        **record.values,
        **refs,
        # Never later than the ingest time: a lastUpdated in the future is not trusted beyond it.
        "last_updated": min(record.last_updated, context.now) if record.last_updated is not None else context.now,
        "version_id": record.version_id,
        "source_file_id": ledger_id,
        "ingested_at": context.now,
    }
    return Operation(spec.name, row[spec.record_key], row["last_updated"],
                     (file_index, UPSERT_PHASE, pending, position), tuple(row[c] for c in spec.column_names))


def delete_operation(url: str, position: Position, resolver: Resolver, file_index: int) -> Operation | None:
    """The delete of a `Type/id` url; None for a type silver does not hold (nothing to do).
    Raises ValueError with the reject reason for a malformed url."""
    if "/" not in url:
        raise ValueError("DELETE url is not Type/id")
    resource_type, source_id = url.split("/", 1)
    spec = SILVER_BY_RESOURCE_TYPE.get(resource_type)
    if spec is None:
        return None
    if not is_valid_id(source_id):
        raise ValueError("DELETE url has no valid id")
    context = resolver.context
    order = context.delete_order if context.delete_order is not None else context.now
    return Operation(spec.name, resolver.key_of(resource_type, source_id), order,
                     (file_index, DELETE_PHASE, False, position), None)


class Counted(NamedTuple):
    """A resource of this type was read (kept or skipped): the ledger's `counts`."""

    resource_type: str


class RejectedRow(NamedTuple):
    """A resource, line or entry that did not become a row: the ledger's `rejected`."""

    position: Position
    reason: str


class DeleteApplied(NamedTuple):
    """A DELETE entry of a silver type: the ledger's `deleted`."""


def item_outputs(item, resolver: Resolver, file_index: int, ledger_id: str) -> list:
    """What one item contributes: ledger counts, rejects, and at most one operation."""
    if isinstance(item, Rejected):
        return [RejectedRow(item.position, item.reason)]
    if isinstance(item, Skipped):
        return [Counted(item.resource_type)]
    if isinstance(item, Kept):
        try:
            operation = upsert_operation(item.record, item.position, resolver, file_index, ledger_id)
        except Unresolved as e:
            return [Counted(item.record.resource_type), RejectedRow(item.position, str(e))]
        return [Counted(item.record.resource_type), operation]
    assert isinstance(item, Delete)
    try:
        operation = delete_operation(item.url, item.position, resolver, file_index)
    except ValueError as e:
        return [RejectedRow(item.position, str(e))]
    return [] if operation is None else [DeleteApplied(), operation]


def surviving_operation(operations: Iterable[Operation]) -> Operation:
    """The operation a key ends with after applying `operations` in load order: an upsert or a
    delete applies unless the current version is strictly newer, and an upsert ordered at or before
    any delete of the key (its tombstone) is ignored."""
    operations = list(operations)
    tombstone = max((o.order for o in operations if o.row is None), default=None)
    current = None
    for operation in sorted(operations, key=lambda o: o.sequence):
        if operation.row is not None and tombstone is not None and operation.order <= tombstone:
            continue
        if current is None or operation.order >= current.order:
            current = operation
    return current


class FileSummary(NamedTuple):
    """What the ledger records of one file."""

    counts: dict
    deleted: int
    rejected: int


def summarize(outputs: Iterable) -> FileSummary:
    counts: dict = {}
    deleted = rejected = 0
    for output in outputs:
        if isinstance(output, Counted):
            counts[output.resource_type] = counts.get(output.resource_type, 0) + 1
        elif isinstance(output, DeleteApplied):
            deleted += 1
        elif isinstance(output, RejectedRow):
            rejected += 1
    return FileSummary(counts, deleted, rejected)


# ---------------------------------------------------------------------------------------------
# Spark
# ---------------------------------------------------------------------------------------------


class RawFile(NamedTuple):
    """One raw object of a run. `uri` (what Spark reads) contains the object key, which can name a
    patient: it is never logged, and rows carry the ledger id instead."""

    index: int  # load order: later files win ties, as later Lambda invocations do
    uri: str
    named_gz: bool  # the name ends in .gz (cross-checked against the content)
    ledger_id: str
    # Uncompressed NDJSON is split into lines across tasks; anything else is read whole by one task.
    by_lines: bool = False
    ends_with_newline: bool = True
    # When the object was uploaded (µs): the ordering of its deletes.
    uploaded_at: int | None = None


# A file read whole arrives in one task as one byte array, which the JVM caps below 2 GiB.
WHOLE_FILE_LIMIT = (1 << 31) - (1 << 20)
# How much of a file's start `plan_raw_file` needs (the sniffer's window and leading white space).
HEAD_BYTES = 2 * SNIFF_BYTES


def plan_raw_file(index: int, uri: str, named_gz: bool, ledger_id: str, size: int, head: bytes,
                  last_byte: bytes, uploaded_at: int | None = None) -> RawFile:
    """How to read one raw object, from its size, its first `HEAD_BYTES` and its last byte:
    uncompressed NDJSON line by line across tasks, anything else whole. Raises InvalidFile when the
    start already shows the file is not FHIR JSON, ValueError when it is too large to read whole."""
    check_gzip_name(head, named_gz)
    by_lines = not is_gzip(head) and sniff_format(head) == "ndjson"
    if not by_lines and size > WHOLE_FILE_LIMIT:
        raise ValueError("a gzip file or JSON document this large cannot be read by one task; split it or "
                         "export it as uncompressed NDJSON")
    return RawFile(index, uri, named_gz, ledger_id, by_lines=by_lines, ends_with_newline=last_byte == b"\n",
                   uploaded_at=uploaded_at)


class FileInvalid(NamedTuple):
    reason: str


class BlockLines(NamedTuple):
    """What one split (block) of an NDJSON file read line by line held: its line count (to number
    the lines of the next blocks), how many are FHIR resources (none in the file: invalid), and
    whether its last line stops mid-value (the file's last line: truncated without a newline)."""

    lines: int
    resource_lines: int
    last_line_cut_off: bool


def _whole_file_events(file: RawFile, content: bytes) -> Iterator:
    try:
        for item in file_items(content, file.named_gz):
            yield file.index, None, item
    except InvalidFile as e:
        yield file.index, None, FileInvalid(str(e))


def _line_events(file: RawFile, rows) -> Iterator:
    """Items of the lines one task reads, numbered within their block; a partition may hold several
    blocks, each read whole and in order."""
    block = None
    lines = resource_lines = 0
    last_raw = b""
    for row in rows:
        if row.block != block:
            if block is not None:
                yield file.index, block, BlockLines(lines, resource_lines, line_is_cut_off(last_raw))
            block, lines, resource_lines = row.block, 0, 0
        raw = bytes(row.raw)
        if block == 0 and lines == 0:
            raw = without_bom(raw)
        lines += 1
        items, seen = ndjson_line_items(lines, raw, complete=True)
        resource_lines += seen
        for item in items:
            yield file.index, block, item
        last_raw = raw
    if block is not None:
        yield file.index, block, BlockLines(lines, resource_lines, line_is_cut_off(last_raw))


def read_events(spark, files: list) -> "RDD":
    """(file index, block or None, item or marker) of every raw file, parsed in parallel."""
    from pyspark.sql import functions as F

    parts = []
    for file in files:
        if file.by_lines:
            rows = (spark.read.option("lineSep", "\n").text(file.uri)
                    .select(F.input_file_block_start().alias("block"), F.col("value").cast("binary").alias("raw")))
            parts.append(rows.rdd.mapPartitions(lambda it, f=file: _line_events(f, it)))
        else:
            content = spark.sparkContext.binaryFiles(file.uri).values()
            parts.append(content.flatMap(lambda data, f=file: _whole_file_events(f, data)))
    return spark.sparkContext.union(parts)


def line_offsets(blocks: dict, ends_with_newline: dict) -> tuple[dict, dict]:
    """From the BlockLines of files read line by line ((file, block) → BlockLines): the number of
    lines before each block, and the files that are invalid as a whole (no resource line, or a last
    line cut off without its newline)."""
    offsets: dict = {}
    invalid: dict = {}
    for file_index in {f for f, _ in blocks}:
        in_order = sorted((b, m) for (f, b), m in blocks.items() if f == file_index)
        before = 0
        for block, lines in in_order:
            offsets[(file_index, block)] = before
            before += lines.lines
        if not sum(m.resource_lines for _, m in in_order):
            invalid[file_index] = "no line of the file is a FHIR resource"
        elif not ends_with_newline[file_index] and in_order[-1][1].last_line_cut_off:
            invalid[file_index] = "the file is truncated: its last line stops inside a JSON value"
    return offsets, invalid


def _numbered(item, lines_before: int):
    """The item with its line number counted from the start of the file."""
    position = item.position
    return item._replace(position=Position(lines_before + position.line, position.entry))


class SilverLoad(NamedTuple):
    """The outcome of reading a run's files: per valid file its summary, per invalid file the reason,
    and the operations that survive (an RDD of Operation, one per table and key)."""

    summaries: dict
    invalid: dict
    operations: "RDD"


def load_silver(spark, files: list, context: LoadContext) -> SilverLoad:
    """Reads, parses and de-identifies `files`; an invalid file contributes nothing (the Rust loader
    quarantines it whole)."""
    events = read_events(spark, files).persist()

    def marker(event):
        file_index, block, item = event
        if isinstance(item, (FileInvalid, BlockLines)):
            return [((file_index, block), item)]
        declaration = uuid_declaration(item)
        return [] if declaration is None else [((file_index, block), declaration)]

    markers = events.flatMap(marker).collect()
    blocks = {key: m for key, m in markers if isinstance(m, BlockLines)}
    offsets, invalid = line_offsets(blocks, {f.index: f.ends_with_newline for f in files})
    invalid.update({key[0]: m.reason for key, m in markers if isinstance(m, FileInvalid)})
    declarations: dict = {}
    for (file_index, block), m in markers:
        if isinstance(m, UuidDeclaration):
            if block is not None:
                m = _numbered(m, offsets[(file_index, block)])
            declarations.setdefault(file_index, []).append(m)
    uuids = spark.sparkContext.broadcast({i: uuid_index(d) for i, d in declarations.items()})
    ledger_ids = {f.index: f.ledger_id for f in files}
    contexts = {f.index: context._replace(delete_order=f.uploaded_at) for f in files}
    dropped = frozenset(invalid)

    def outputs(event):
        file_index, block, item = event
        if file_index in dropped or isinstance(item, (FileInvalid, BlockLines)):
            return []
        if block is not None:
            item = _numbered(item, offsets[(file_index, block)])
        resolver = Resolver(contexts[file_index], uuids.value.get(file_index, {}))
        return [(file_index, output) for output in item_outputs(item, resolver, file_index, ledger_ids[file_index])]

    results = events.flatMap(outputs).persist()
    summaries = {f.index: FileSummary({}, 0, 0) for f in files if f.index not in dropped}
    summaries.update(results.filter(lambda r: not isinstance(r[1], Operation))
                     .groupByKey().mapValues(summarize).collectAsMap())
    surviving = (results.filter(lambda r: isinstance(r[1], Operation))
                 .map(lambda r: ((r[1].table, r[1].key), r[1]))
                 .groupByKey().map(lambda kv: surviving_operation(kv[1])).persist())
    return SilverLoad(summaries, invalid, surviving)


def spark_schema(spec: TableSpec, timestamps_as_micros: bool = False):
    """The Spark schema of a table (timestamps optionally as µs longs, how rows are built)."""
    from pyspark.sql import types as T

    spark_types = {"str": T.StringType(), "int": T.IntegerType(), "long": T.LongType(),
                   "double": T.DoubleType(), "bool": T.BooleanType(),
                   "ts": T.LongType() if timestamps_as_micros else T.TimestampType()}
    return T.StructType([T.StructField(c.name, spark_types[c.kind], c.nullable) for c in spec.columns])


def rows_to_dataframe(spark, spec: TableSpec, rows: "RDD"):
    """A DataFrame with the table's exact schema from rows whose timestamps are µs integers
    (converted in the JVM, so no Python datetime or local time zone is involved)."""
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(rows, spark_schema(spec, timestamps_as_micros=True))
    timestamps = set(spec.timestamp_columns)
    return frame.select([F.timestamp_micros(c).alias(c) if c in timestamps else F.col(c) for c in spec.column_names])


def upserts_frame(spark, load: SilverLoad, table: str):
    """The rows that survive as upserts of one silver table."""
    rows = load.operations.filter(lambda o, t=table: o.table == t and o.row is not None).map(lambda o: o.row)
    return rows_to_dataframe(spark, SILVER[table], rows)


def deletes_frame(spark, load: SilverLoad, table: str):
    """The keys that end deleted in one silver table, with the delete's ordering (µs)."""
    rows = load.operations.filter(lambda o, t=table: o.table == t and o.row is None).map(lambda o: (o.key, o.order))
    return spark.createDataFrame(rows, f"{SILVER[table].record_key} string, delete_order long")


def deletable_rows(deletes, current, table: str):
    """The stored rows the deletes remove: a delete loses to a stored version that is strictly
    newer (Hudi's delete operation ignores ordering, so the comparison is made here)."""
    from pyspark.sql import functions as F

    spec = SILVER[table]
    return (current.join(deletes, spec.record_key)
            .where(F.unix_micros("last_updated") <= F.col("delete_order"))
            .select(*spec.column_names))
