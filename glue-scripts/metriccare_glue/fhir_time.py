"""FHIR date/dateTime/instant text to UTC microseconds, and Hudi instants, exactly as
`functions/core/src/time.rs` does it.

Written out by hand (not `datetime.fromisoformat`) for three reasons: the Rust parser accepts
things Python's does not (year 0000, a leap second `:60`, more than six fraction digits), rejects
things Python accepts (`2023-01-01T10:00`, offsets without a colon), and the row values must be
the same integers, so no float or local-time conversion may happen on the way.
"""

MICROS_PER_DAY = 86_400_000_000

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class FhirValueError(ValueError):
    """A date or time the Rust parser refuses; the text is the reject reason."""


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, including 0 and negatives)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number since 1970-01-01 (inverse of `days_from_civil`)."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def parse_fhir_datetime(text: str) -> int:
    """Microseconds since the epoch (UTC) of a FHIR date, dateTime or instant.

    Partial dates (`2020`, `2020-03`) mean their first instant; a time without an offset is read as
    UTC; fraction digits beyond six are cut off, not rounded; a leap second counts as second 59.
    """
    b = text.encode("utf-8")

    def bad() -> FhirValueError:
        return FhirValueError(f"invalid FHIR dateTime {text!r}")

    def digits(start: int, end: int) -> int:
        part = b[start:end]
        if len(part) != end - start or not all(0x30 <= c <= 0x39 for c in part):
            raise bad()
        return int(part)

    year = digits(0, 4)
    if len(b) == 4:
        month, day = 1, 1
    elif len(b) == 7 and b[4:5] == b"-":
        month, day = digits(5, 7), 1
    elif len(b) >= 10 and b[4:5] == b"-" and b[7:8] == b"-":
        month, day = digits(5, 7), digits(8, 10)
    else:
        raise bad()
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month - 1] + (month == 2 and _is_leap(year)):
        raise FhirValueError(f"impossible date {text!r}")
    midnight = days_from_civil(year, month, day) * MICROS_PER_DAY
    if len(b) <= 10:
        return midnight
    if b[10:11] != b"T" or len(b) < 19 or b[13:14] != b":" or b[16:17] != b":":
        raise bad()
    hour, minute, second = digits(11, 13), digits(14, 16), digits(17, 19)
    if hour > 23 or minute > 59 or second > 60:
        raise FhirValueError(f"impossible time in {text!r}")
    pos = 19
    fraction_micros = 0
    if b[pos:pos + 1] == b".":
        pos += 1
        start = pos
        while pos < len(b) and 0x30 <= b[pos] <= 0x39:
            pos += 1
        if pos == start:
            raise bad()
        fraction_micros = int(b[start:pos][:6].ljust(6, b"0"))
    rest = b[pos:]
    if rest in (b"", b"Z"):
        offset_seconds = 0
    elif len(rest) == 6 and rest[0:1] in (b"+", b"-") and rest[3:4] == b":":
        hours, minutes = digits(pos + 1, pos + 3), digits(pos + 4, pos + 6)
        if hours > 14 or minutes > 59:
            raise FhirValueError(f"impossible offset in {text!r}")
        magnitude = hours * 3600 + minutes * 60
        offset_seconds = magnitude if rest[0:1] == b"+" else -magnitude
    else:
        raise bad()
    local_seconds = hour * 3600 + minute * 60 + min(second, 59)
    return midnight + (local_seconds - offset_seconds) * 1_000_000 + fraction_micros


def utc_day(micros: int) -> int:
    """Days since 1970-01-01 of a UTC timestamp (the "UTC calendar date" of DESIGN.md)."""
    return micros // MICROS_PER_DAY


def parse_fhir_year(text: str) -> int:
    """The UTC year of a FHIR date (`birthDate` → birth year), validated like any other date."""
    return civil_from_days(utc_day(parse_fhir_datetime(text)))[0]


def hudi_instant(micros: int) -> str:
    """A Hudi instant (`yyyyMMddHHmmssSSS`, UTC) for a time in microseconds."""
    year, month, day = civil_from_days(utc_day(micros))
    within_day = micros % MICROS_PER_DAY
    seconds, sub_second = divmod(within_day, 1_000_000)
    hour, seconds = divmod(seconds, 3600)
    minute, second = divmod(seconds, 60)
    return f"{year:04d}{month:02d}{day:02d}{hour:02d}{minute:02d}{second:02d}{sub_second // 1000:03d}"


def parse_hudi_instant(instant: str) -> int | None:
    """Microseconds since the epoch of a Hudi instant, or None when it is not one."""
    if len(instant) != 17 or not instant.isascii() or not instant.isdigit():
        return None
    iso = (f"{instant[0:4]}-{instant[4:6]}-{instant[6:8]}T{instant[8:10]}:{instant[10:12]}:"
           f"{instant[12:14]}.{instant[14:17]}Z")
    try:
        return parse_fhir_datetime(iso)
    except FhirValueError:
        return None
