"""FHIR R4 input, read and parsed by the rules of `functions/core/src/fhir/` (reader.rs, mod.rs and
model.rs): the same files are accepted, the same resources rejected, the same fields kept.

Two entry points produce the same items:

- `file_items(data, named_gz)`: a whole raw object (Bundle JSON or NDJSON, gzip or not), in one task;
- `ndjson_line_items(line_no, raw, complete)`: one line of an uncompressed NDJSON file, so that
  Spark can parse a large Bulk export line by line in parallel.

Items carry their `Position` (line, entry) so that the caller can reproduce the Rust loader's
order-dependent rules (`urn:uuid:` resolution, "later wins" ties). Parsing keeps only what silver
needs; names, telecom, narrative and the like are never copied out of the JSON.
"""

import itertools
import json
import re
import zlib
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from .deid import postal_prefix
from .fhir_time import FhirValueError, parse_fhir_datetime, parse_fhir_year

SNOMED = "http://snomed.info/sct"
BUNDLE_TYPES = ("collection", "transaction", "batch", "searchset")
KEPT_TYPES = ("Patient", "Encounter", "Condition", "Organization")

# Limits of `ReadLimits::default()`: a longer NDJSON line is rejected, a gzip stream that expands
# beyond them is a decompression bomb and the file is invalid.
MAX_LINE_BYTES = 64 << 20
MAX_DECOMPRESSED_BYTES = 32 << 30
MAX_GZIP_RATIO = 200
RATIO_GRACE_BYTES = 64 << 20
# How much of the start of a file the format sniffer looks at before it decides.
SNIFF_BYTES = 1 << 20
# The first resourceType's value, whatever the spacing (as reader.rs first_resource_type).
_FIRST_RESOURCE_TYPE = re.compile(rb'"resourceType"[ \t\r\n\f]*:[ \t\r\n\f]*"([^"]*)"')

# `u8::is_ascii_whitespace` (no vertical tab, unlike `bytes.isspace`).
_ASCII_WHITESPACE = b" \t\n\r\x0c"
_UTF8_BOM = b"\xef\xbb\xbf"


class InvalidFile(Exception):
    """The content is bad (not JSON, truncated, unknown encoding, not FHIR): the whole file fails,
    nothing of it reaches silver."""


class Rejection(Exception):
    """One resource (or line, or entry) cannot become a row; the rest of the file goes on."""


# ---------------------------------------------------------------------------------------------
# Strict JSON, as serde_json reads it
# ---------------------------------------------------------------------------------------------


class JsonObject(dict):
    """A JSON object. Python keeps the last of repeated keys silently; serde refuses a repeated
    field of a typed struct, and a Bundle's top level is walked pair by pair, so repeats are kept."""

    duplicates: frozenset = frozenset()
    pairs: list | None = None

    def ordered_pairs(self):
        return self.pairs if self.pairs is not None else self.items()


def _make_object(pairs: list) -> JsonObject:
    obj = JsonObject(pairs)
    if len(obj) != len(pairs):
        seen, repeated = set(), set()
        for key, _ in pairs:
            (repeated if key in seen else seen).add(key)
        obj.duplicates = frozenset(repeated)
        obj.pairs = pairs
    return obj


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_make_object, parse_constant=_refuse_constant)


def loads(text: str):
    """Parses JSON like serde_json: NaN/Infinity refused, repeated keys recorded."""
    return _DECODER.decode(text)


def _ends_mid_value(text: str, error: json.JSONDecodeError) -> bool:
    """Whether the text stops inside a JSON value (serde's `Category::Eof`): a cut-off line."""
    if error.msg.startswith("Unterminated string") or error.pos >= len(text):
        return True
    tail = text[error.pos:]
    partial_literal = any(word.startswith(tail) and tail != word for word in ("true", "false", "null"))
    partial_number = tail[-1:] in ("-", "+", ".", "e", "E") and all(c in "0123456789+-.eE" for c in tail)
    return partial_literal or partial_number


# ---------------------------------------------------------------------------------------------
# Typed decoding: serde's derived structs of model.rs (unknown fields skipped, repeats refused)
# ---------------------------------------------------------------------------------------------


_MISSING = object()


class _Text:
    """`Option<Cow<str>>`: absent or null is None, anything but a string is an error."""

    @staticmethod
    def decode(value, path):
        if value is _MISSING or value is None or isinstance(value, str):
            return None if value is _MISSING else value
        raise Rejection(f"invalid type at {path}: expected a string")


class _Flag:
    """`Option<bool>`."""

    @staticmethod
    def decode(value, path):
        if value is _MISSING or value is None or type(value) is bool:
            return None if value is _MISSING else value
        raise Rejection(f"invalid type at {path}: expected a boolean")


class _Struct:
    """A derived struct: every declared field decoded, repeated declared fields refused."""

    def __init__(self, **fields):
        self.fields = fields

    def decode(self, value, path):
        if not isinstance(value, JsonObject):
            raise Rejection(f"invalid type at {path}: expected an object")
        repeated = value.duplicates.intersection(self.fields)
        if repeated:
            raise Rejection(f"duplicate field {sorted(repeated)[0]} at {path}")
        return {name: kind.decode(value.get(name, _MISSING), f"{path}.{name}") for name, kind in self.fields.items()}


class _Maybe:
    """`Option<Struct>`: absent or null is None."""

    def __init__(self, struct: _Struct):
        self.struct = struct

    def decode(self, value, path):
        return None if value is _MISSING or value is None else self.struct.decode(value, path)


class _Defaulted:
    """`#[serde(default)] Struct`: absent is the empty struct, null is an error."""

    def __init__(self, struct: _Struct):
        self.struct = struct

    def decode(self, value, path):
        return self.struct.decode(JsonObject() if value is _MISSING else value, path)


class _Many:
    """`#[serde(default)] Vec<Struct>`: absent is empty, null is an error."""

    def __init__(self, struct: _Struct):
        self.struct = struct

    def decode(self, value, path):
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            raise Rejection(f"invalid type at {path}: expected an array")
        return [self.struct.decode(item, f"{path}[{i}]") for i, item in enumerate(value)]


_META = _Struct(lastUpdated=_Text, versionId=_Text)
_CODING = _Struct(system=_Text, code=_Text, display=_Text)
_CONCEPT = _Struct(coding=_Many(_CODING), text=_Text)
_REFERENCE = _Struct(reference=_Text, display=_Text)
_PERIOD = _Struct(start=_Text, end=_Text)
_ADDRESS = _Struct(city=_Text, state=_Text, postalCode=_Text, country=_Text)
_IDENTIFIER = _Struct(system=_Text, value=_Text)
_NO_ADDRESS = _ADDRESS.decode(JsonObject(), "address")

_MODELS = {
    "Patient": _Struct(
        id=_Text, meta=_Defaulted(_META), gender=_Text, birthDate=_Text, deceasedBoolean=_Flag,
        deceasedDateTime=_Text, address=_Many(_ADDRESS), maritalStatus=_Maybe(_CONCEPT)),
    "Encounter": _Struct(
        id=_Text, meta=_Defaulted(_META), status=_Text, **{"class": _Maybe(_CODING), "type": _Many(_CONCEPT)},
        subject=_Maybe(_REFERENCE), period=_Maybe(_PERIOD), serviceProvider=_Maybe(_REFERENCE),
        hospitalization=_Maybe(_Struct(dischargeDisposition=_Maybe(_CONCEPT))), reasonCode=_Many(_CONCEPT)),
    "Condition": _Struct(
        id=_Text, meta=_Defaulted(_META), clinicalStatus=_Maybe(_CONCEPT), verificationStatus=_Maybe(_CONCEPT),
        category=_Many(_CONCEPT), code=_Maybe(_CONCEPT), subject=_Maybe(_REFERENCE), encounter=_Maybe(_REFERENCE),
        onsetDateTime=_Text, abatementDateTime=_Text, recordedDate=_Text),
    "Organization": _Struct(
        id=_Text, meta=_Defaulted(_META), identifier=_Many(_IDENTIFIER), active=_Flag, name=_Text,
        type=_Many(_CONCEPT), address=_Many(_ADDRESS)),
}
# The fields of a Bundle entry the reader looks at (`RawEntry`: a repeat of one fails the Bundle).
_ENTRY_FIELDS = frozenset(("fullUrl", "resource", "request"))
_REQUEST = _Struct(method=_Text, url=_Text)


# ---------------------------------------------------------------------------------------------
# References and records
# ---------------------------------------------------------------------------------------------


class RefTarget(NamedTuple):
    """A reference as the source wrote it: `literal` (Type/id), `uuid` (a Bundle entry's fullUrl,
    resolved once the file is read) or `conditional` (Type?search)."""

    form: str
    resource_type: str
    value: str


def is_valid_id(source_id: str) -> bool:
    """FHIR's id rule `[A-Za-z0-9\\-\\.]{1,64}`; it also rules out path traversal and separators."""
    return (1 <= len(source_id) <= 64 and source_id.isascii()
            and all(c.isalnum() or c in "-." for c in source_id) and source_id not in (".", ".."))


def parse_reference(reference: str, expected: str) -> RefTarget:
    """Parses a reference that must point at a resource of type `expected`."""
    if reference.startswith("urn:uuid:"):
        uuid = reference[len("urn:uuid:"):]
        if not uuid:
            raise Rejection(f"empty urn:uuid reference where {expected} expected")
        return RefTarget("uuid", "", uuid)
    if "?" in reference:
        kind, query = reference.split("?", 1)
        if kind == expected and query:
            return RefTarget("conditional", kind, query)
        raise Rejection(f"conditional reference where {expected} expected")
    at = reference.find("/_history/")
    segments = (reference if at < 0 else reference[:at]).split("/")
    source_id, kind = segments[-1], segments[-2] if len(segments) > 1 else ""
    if kind != expected:
        raise Rejection(f"reference does not point to a {expected}")
    if not is_valid_id(source_id):
        raise Rejection("reference has no valid id")
    return RefTarget("literal", kind, source_id)


@dataclass(frozen=True)
class Record:
    """A kept resource before pseudonymisation: silver column values that need no key, and the
    references (`refs`, by column) that become keys once the whole file is known."""

    resource_type: str
    id: str
    last_updated: int | None
    version_id: str | None
    values: dict
    refs: dict


def _date(kind: str, name: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_fhir_datetime(text)
    except FhirValueError as e:
        raise Rejection(f"{kind}.{name}: {e}") from None


def _reference(kind: str, name: str, value: dict | None, expected: str) -> RefTarget | None:
    text = value["reference"] if value else None
    if text is None:
        return None
    try:
        return parse_reference(text, expected)
    except Rejection as e:
        raise Rejection(f"{kind}.{name}: {e}") from None


def _preferred(concept: dict | None) -> dict | None:
    """The coding an analyst wants: SNOMED CT when present, else the first one."""
    if not concept:
        return None
    codings = concept["coding"]
    return next((c for c in codings if c["system"] == SNOMED), codings[0] if codings else None)


def _first_code(concept: dict | None) -> str | None:
    coding = _preferred(concept)
    return coding["code"] if coding else None


def _display_or_text(coding: dict | None, concept: dict | None) -> str | None:
    """The coding's display, else the concept's text (an empty display is still a display)."""
    display = coding["display"] if coding else None
    return display if display is not None else (concept["text"] if concept else None)


def _first(items: list):
    return items[0] if items else None


def _common(kind: str, resource: dict, full_url: str | None) -> tuple[str, int | None, str | None]:
    source_id = resource["id"]
    if source_id is None:
        if full_url is None or not full_url.startswith("urn:uuid:"):
            raise Rejection(f"{kind} has no id")
        source_id = full_url[len("urn:uuid:"):]
    if not is_valid_id(source_id):
        raise Rejection(f"{kind} id is not a valid FHIR id")
    meta = resource["meta"]
    return source_id, _date(kind, "meta.lastUpdated", meta["lastUpdated"]), meta["versionId"]


def _patient(p: dict) -> tuple[dict, dict]:
    birth_year = None
    if p["birthDate"] is not None:
        try:
            birth_year = parse_fhir_year(p["birthDate"])
        except FhirValueError as e:
            raise Rejection(f"Patient.birthDate: {e}") from None
    deceased_at = _date("Patient", "deceasedDateTime", p["deceasedDateTime"])
    address = _first(p["address"]) or _NO_ADDRESS
    prefix = postal_prefix(address["postalCode"]) if address["postalCode"] is not None else None
    return {
        "gender": p["gender"],
        "birth_year": birth_year,
        "deceased": True if deceased_at is not None else p["deceasedBoolean"],
        "deceased_at": deceased_at,
        "postal_prefix": prefix or None,
        "state": address["state"],
        "country": address["country"],
        "marital_status": _first_code(p["maritalStatus"]),
    }, {}


def _encounter(e: dict) -> tuple[dict, dict]:
    patient = _reference("Encounter", "subject", e["subject"], "Patient")
    if patient is None:
        raise Rejection("Encounter has no subject")
    period = e["period"] or {"start": None, "end": None}
    period_start = _date("Encounter", "period.start", period["start"])
    period_end = _date("Encounter", "period.end", period["end"])
    provider = e["serviceProvider"]
    hospital = _reference("Encounter", "serviceProvider", provider, "Organization")
    kind = _first(e["type"])
    kind_coding = _preferred(kind)
    hospitalization = e["hospitalization"]
    return {
        "status": e["status"],
        "class_code": e["class"]["code"] if e["class"] else None,
        "type_code": kind_coding["code"] if kind_coding else None,
        "type_display": _display_or_text(kind_coding, kind),
        "reason_code": _first_code(_first(e["reasonCode"])),
        "period_start": period_start,
        "period_end": period_end,
        "hospital_name": provider["display"] if provider else None,
        "discharge_disposition": _first_code(hospitalization["dischargeDisposition"] if hospitalization else None),
    }, {"patient_key": patient, "hospital_key": hospital}


def _condition(c: dict) -> tuple[dict, dict]:
    patient = _reference("Condition", "subject", c["subject"], "Patient")
    if patient is None:
        raise Rejection("Condition has no subject")
    encounter = _reference("Condition", "encounter", c["encounter"], "Encounter")
    coding = _preferred(c["code"])
    return {
        "code_system": coding["system"] if coding else None,
        "code": coding["code"] if coding else None,
        "code_display": _display_or_text(coding, c["code"]),
        "clinical_status": _first_code(c["clinicalStatus"]),
        "verification_status": _first_code(c["verificationStatus"]),
        "category": _first_code(_first(c["category"])),
        "onset_at": _date("Condition", "onsetDateTime", c["onsetDateTime"]),
        "abatement_at": _date("Condition", "abatementDateTime", c["abatementDateTime"]),
        "recorded_at": _date("Condition", "recordedDate", c["recordedDate"]),
    }, {"patient_key": patient, "encounter_key": encounter}


def _organization(o: dict) -> tuple[dict, dict]:
    address = _first(o["address"]) or _NO_ADDRESS
    # The first identifier with a value: what a conditional reference `?identifier=sys|value` names.
    identifier = next((f"{i['system'] or ''}|{i['value']}" for i in o["identifier"] if i["value"] is not None), None)
    return {
        "name": o["name"],
        "type_code": _first_code(_first(o["type"])),
        "active": o["active"],
        "city": address["city"],
        "state": address["state"],
    }, {"identifier_key": RefTarget("conditional", "Organization", f"identifier={identifier}") if identifier else None}


_EXTRACT = {"Patient": _patient, "Encounter": _encounter, "Condition": _condition, "Organization": _organization}


def resource_type_of_text(raw: str) -> str:
    """The `resourceType` of a resource's JSON text. Bulk exports put it first, and the Rust reader
    takes it off the prefix without parsing, so that case must not parse here either: it decides
    whether a broken line of an unkept type is counted (skipped) or rejected."""
    prefix = '{"resourceType":"'
    if raw.startswith(prefix):
        rest = raw[len(prefix):]
        end = rest.find('"')
        if end > 0 and "\\" not in rest[:end]:
            return rest[:end]
    try:
        obj = loads(raw)
    except ValueError as e:
        raise Rejection(f"not valid JSON: {e}") from None
    return resource_type_of_object(obj)


def resource_type_of_object(obj) -> str:
    if not isinstance(obj, JsonObject) or "resourceType" in obj.duplicates:
        raise Rejection("not valid JSON: a resource must be an object with one resourceType")
    kind = obj.get("resourceType")
    if kind is not None and not isinstance(kind, str):
        raise Rejection("not valid JSON: resourceType is not a string")
    if not kind:
        raise Rejection("resource has no resourceType")
    return kind


def parse_resource(kind: str, resource, full_url: str | None) -> Record | None:
    """The record of one resource of type `kind` (already read off it); None for a type silver does
    not hold (counted, then skipped). `resource` is the parsed object, or the raw text of an NDJSON
    line, parsed only when the type is kept."""
    if kind == "Bundle":
        raise Rejection("a Bundle nested inside a Bundle is not accepted")
    if kind not in KEPT_TYPES:
        if not kind.isascii() or not kind.isalpha() or not kind[0].isupper() or len(kind) > 64:
            raise Rejection("resourceType is not a FHIR resource type name")
        return None
    if isinstance(resource, str):
        try:
            resource = loads(resource)
        except ValueError as e:
            raise Rejection(f"not valid JSON: {e}") from None
    decoded = _MODELS[kind].decode(resource, kind)
    source_id, last_updated, version_id = _common(kind, decoded, full_url)
    values, refs = _EXTRACT[kind](decoded)
    return Record(kind, source_id, last_updated, version_id, values, refs)


# ---------------------------------------------------------------------------------------------
# Items of a file
# ---------------------------------------------------------------------------------------------


class Position(NamedTuple):
    """Where an item sits in its file: 1-based line, and 1-based Bundle entry (0 when not an entry).
    Tuples order as the file does."""

    line: int
    entry: int


class Kept(NamedTuple):
    position: Position
    record: Record
    # The `urn:uuid` this entry's fullUrl declares, which references in the same file resolve to.
    uuid: str | None


class Skipped(NamedTuple):
    position: Position
    resource_type: str


class Delete(NamedTuple):
    """A Bundle entry with `request.method = DELETE`; `url` should be `Type/id`."""

    position: Position
    url: str


class Rejected(NamedTuple):
    position: Position
    reason: str


Item = Kept | Skipped | Delete | Rejected


def _resource_item(position: Position, kind: str, resource, full_url: str | None) -> Item:
    try:
        record = parse_resource(kind, resource, full_url)
    except Rejection as e:
        return Rejected(position, str(e))
    if record is None:
        return Skipped(position, kind)
    uuid = full_url[len("urn:uuid:"):] if full_url and full_url.startswith("urn:uuid:") else None
    return Kept(position, record, uuid)


def _entry_item(element, position: Position) -> Item:
    """One Bundle entry (its fields already checked by `_walk_top_level`)."""
    request = element.get("request")
    if request is not None:
        try:
            parsed = _REQUEST.decode(request, "request")
        except Rejection:
            parsed = None  # an unreadable request is not a DELETE: the entry's resource still counts
        method = parsed and parsed["method"]
        if method and method.isascii() and method.lower() == "delete":
            url = parsed["url"]
            return Delete(position, url) if url is not None else Rejected(position, "DELETE entry without request.url")
    resource = element.get("resource")
    if resource is None:
        return Rejected(position, "Bundle entry without a resource")
    if not isinstance(resource, JsonObject):
        return Rejected(position, "Bundle entry resource is not a JSON object")
    full_url = element.get("fullUrl")
    try:
        kind = resource_type_of_object(resource)
    except Rejection as e:
        return Rejected(position, str(e))
    return _resource_item(position, kind, resource, full_url if isinstance(full_url, str) else None)


def _check_bundle_type(bundle_type: str | None) -> None:
    if bundle_type is not None and bundle_type not in BUNDLE_TYPES:
        raise Rejection(f"Bundle type {bundle_type!r} is not accepted (accepted: {', '.join(BUNDLE_TYPES)})")


def _walk_top_level(obj, line: int, items: list) -> None:
    """A document, or an NDJSON line that is a Bundle, walked key by key as the Rust streaming
    reader does: `entry` elements become items as they are met (so items before an error stand),
    a top-level resource that is not a Bundle becomes one item. Raises Rejection when the value is
    not an acceptable FHIR document."""
    if not isinstance(obj, JsonObject):
        raise Rejection("invalid type: expected a FHIR resource object")
    resource_type = None
    bundle_type = None
    kept: list = []
    for key, value in obj.ordered_pairs():
        if key == "resourceType":
            if not isinstance(value, str):
                raise Rejection("invalid type: resourceType is not a string")
            resource_type = value
        elif key == "entry" and resource_type in (None, "Bundle"):
            _check_bundle_type(bundle_type)
            if not isinstance(value, list):
                raise Rejection("invalid type: entry is not an array")
            for index, element in enumerate(value, start=1):
                if not isinstance(element, JsonObject):
                    raise Rejection("invalid type: a Bundle entry is not an object")
                repeated = element.duplicates.intersection(_ENTRY_FIELDS)
                if repeated:
                    raise Rejection(f"duplicate field {sorted(repeated)[0]} in a Bundle entry")
                items.append(_entry_item(element, Position(line, index)))
        elif resource_type == "Bundle" and key != "type":
            continue  # a Bundle's id, meta, link, total: not needed
        else:
            if key == "type":
                bundle_type = value if isinstance(value, str) else None
            kept.append((key, value))
    if not resource_type:
        raise Rejection("no resourceType: not a FHIR resource")
    if resource_type == "Bundle":
        _check_bundle_type(bundle_type)
        if bundle_type is None:
            raise Rejection("the Bundle has no type")
        return
    # A single resource as a whole document: its fields as they were, under its resourceType.
    resource = _make_object([("resourceType", resource_type), *kept])
    items.append(_resource_item(Position(line, 0), resource_type, resource, None))


def line_is_cut_off(raw: bytes) -> bool:
    """Whether an NDJSON line stops inside a JSON value: as the last line of a file without a final
    newline, it means the file was cut off."""
    try:
        text = raw.strip(_ASCII_WHITESPACE).decode("utf-8")
        if text:
            loads(text)
    except json.JSONDecodeError as e:
        return _ends_mid_value(e.doc, e)
    except ValueError:
        return False  # not UTF-8, or NaN and friends: a bad line, not a cut-off one
    return False


def ndjson_line_items(line_no: int, raw: bytes, complete: bool) -> tuple[list, bool]:
    """The items of one NDJSON line, and whether the line counts as a FHIR resource (a file with
    none is invalid). `complete` is False only for a last line without its newline: if that line
    stops mid-value the file was cut off, and InvalidFile is raised."""
    position = Position(line_no, 0)
    if len(raw) > MAX_LINE_BYTES:
        return [Rejected(position, f"line longer than {MAX_LINE_BYTES} bytes")], False
    stripped = raw.strip(_ASCII_WHITESPACE)
    if not stripped:
        return [], False
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        return [Rejected(position, "line is not valid UTF-8")], False
    if not complete and line_is_cut_off(stripped):
        raise InvalidFile("the file is truncated: its last line stops inside a JSON value")
    try:
        kind = resource_type_of_text(text)
    except Rejection as e:
        return [Rejected(position, str(e))], False
    if kind != "Bundle":
        return [_resource_item(position, kind, text, None)], True
    items: list = []
    try:
        _walk_top_level(loads(text), line_no, items)
    except (ValueError, Rejection) as e:
        items.append(Rejected(position, f"invalid Bundle line: {e}"))
        return items, False
    return items, True


def without_bom(first_line: bytes) -> bytes:
    """The first physical line of a file read line by line, without a UTF-8 byte order mark (the
    whole-file reader skips it before the first line)."""
    return first_line[len(_UTF8_BOM):] if first_line.startswith(_UTF8_BOM) else first_line


def _content_start(data: bytes) -> int:
    """After a UTF-8 byte order mark and leading white space."""
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    return len(data) - len(data[start:].lstrip(_ASCII_WHITESPACE))


def is_gzip(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"


def check_gzip_name(head: bytes, named_gz: bool) -> None:
    """A `.gz` name with content that is not gzip is refused (the name is only cross-checked: the
    format is sniffed from the bytes)."""
    if named_gz and head and not is_gzip(head):
        raise InvalidFile("the file name ends in .gz but the content is not gzip")


def sniff_format(head: bytes) -> str:
    """`ndjson` or `json`, from the (decompressed) start of a file, as the Rust reader decides it:
    NDJSON when the first line is a complete JSON value and more content follows it."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidFile("the file is UTF-16; FHIR JSON must be UTF-8")
    start = _content_start(head)
    first = head[start:start + 1]
    if not first:
        raise InvalidFile("the file is empty")
    if first == b"[":
        raise InvalidFile("a JSON array is neither a FHIR Bundle nor NDJSON (one resource per line)")
    if first != b"{":
        raise InvalidFile("the file is not JSON (it does not start with '{')")
    window = head[start:start + SNIFF_BYTES]
    end = window.find(b"\n")
    if end < 0 and len(window) >= SNIFF_BYTES:
        # A first line longer than the window: one long resource per line, unless a Bundle.
        found = _FIRST_RESOURCE_TYPE.search(window)
        return "json" if found and found.group(1) == b"Bundle" else "ndjson"
    if end < 0 or not head[start + end:].strip(_ASCII_WHITESPACE):
        return "json"
    try:
        loads(head[start:start + end].decode("utf-8"))
    except ValueError:
        return "json"
    return "ndjson"


def _decompressed(data: bytes) -> Iterator[bytes]:
    """The content of every gzip member, in chunks, refusing decompression bombs with the Rust
    limits (so a huge export is never held decompressed)."""
    chunk = 1 << 20
    produced = 0
    position = 0
    while position < len(data):
        decompressor = zlib.decompressobj(wbits=31)
        pending = b""
        try:
            while not decompressor.eof:
                if not pending:
                    if position >= len(data):
                        raise InvalidFile("corrupt or unreadable content: the gzip stream ends early")
                    pending = data[position:position + chunk]
                    position += len(pending)
                out = decompressor.decompress(pending, chunk * 8)
                pending = decompressor.unconsumed_tail
                produced += len(out)
                compressed = position - len(pending)
                if produced > MAX_DECOMPRESSED_BYTES or (
                        produced > RATIO_GRACE_BYTES and produced > max(compressed, 1) * MAX_GZIP_RATIO):
                    raise InvalidFile("gzip content expands beyond the decompression-bomb limits "
                                      f"({MAX_DECOMPRESSED_BYTES} bytes or {MAX_GZIP_RATIO}x)")
                yield out
        except zlib.error as e:
            raise InvalidFile(f"corrupt or unreadable content: {e}") from None
        # What followed the end of this member is the start of the next one.
        position -= len(decompressor.unused_data)


def _lines(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    """(line without its newline, whether a newline ended it) of a chunked stream."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start:end]), True
            start = end + 1
        del pending[:start]
    if pending:
        yield bytes(pending), False


def _document_items(content: bytes) -> list:
    try:
        obj = loads(content.decode("utf-8"))
    except json.JSONDecodeError as e:
        kind = "truncated" if _ends_mid_value(e.doc, e) else "not a valid FHIR JSON document"
        raise InvalidFile(f"the file is {kind}: {e}") from None
    except ValueError as e:
        raise InvalidFile(f"not a valid FHIR JSON document: {e}") from None
    items: list = []
    try:
        _walk_top_level(obj, 1, items)
    except Rejection as e:
        raise InvalidFile(f"not a valid FHIR JSON document: {e}") from None
    return items


def _ndjson_items(lines: Iterator[tuple[bytes, bool]]) -> Iterator:
    resources_seen = 0
    for line_no, (raw, complete) in enumerate(lines, start=1):
        items, seen = ndjson_line_items(line_no, raw, complete)
        resources_seen += seen
        yield from items
    if not resources_seen:
        raise InvalidFile("no line of the file is a FHIR resource")


def file_items(data: bytes, named_gz: bool) -> Iterator:
    """Every item of one raw object, in file order; `named_gz` says whether its name ends in `.gz`.
    Raises InvalidFile (possibly after yielding some items: the caller must then drop the whole
    file, as the Rust loader quarantines it)."""
    check_gzip_name(data[:2], named_gz)
    chunks = _decompressed(data) if is_gzip(data) else iter([data])
    head = bytearray()
    for chunk in chunks:
        head += chunk
        if len(head) >= 2 * SNIFF_BYTES:
            break
    start = _content_start(bytes(head))
    content = itertools.chain([bytes(head[start:])], chunks)
    if sniff_format(bytes(head)) == "ndjson":
        yield from _ndjson_items(_lines(content))
    else:
        yield from _document_items(b"".join(content))
