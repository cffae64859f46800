//! FHIR date/dateTime/instant parsing into UTC microseconds, and Hudi instant formatting.
//!
//! Hand-written rather than a general date library because it runs for every date of every
//! resource: it validates the FHIR lexical form, honours the offset and rejects impossible dates
//! (`2023-02-30`) with a reason a person can read.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a UTC timestamp in microseconds (the "UTC calendar date" of DESIGN.md).
pub fn utc_day(micros: i64) -> i32 {
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// Parses a FHIR `date`, `dateTime` or `instant` into microseconds since the epoch, UTC.
/// Partial dates (`2020`, `2020-03`) mean their first instant; a time without an offset is read
/// as UTC (FHIR requires an offset there, real exports sometimes omit it).
pub fn parse_fhir_datetime(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    let bad = || format!("invalid FHIR dateTime {text:?}");
    let digits = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.iter().all(u8::is_ascii_digit) {
            Ok(part
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
        } else {
            Err(bad())
        }
    };
    let year = digits(0..4)? as i32;
    let (month, day) = match b.len() {
        4 => (1, 1),
        7 if b[4] == b'-' => (digits(5..7)?, 1),
        n if n >= 10 && b[4] == b'-' && b[7] == b'-' => (digits(5..7)?, digits(8..10)?),
        _ => return Err(bad()),
    };
    let date = NaiveDate::from_ymd_opt(year, month, day)
        .ok_or_else(|| format!("impossible date {text:?}"))?;
    let midnight = i64::from(date.num_days_from_ce() - EPOCH_DAYS_FROM_CE) * MICROS_PER_DAY;
    if b.len() <= 10 {
        return Ok(midnight);
    }
    if b[10] != b'T' || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!("impossible time in {text:?}"));
    }
    let mut pos = 19;
    let mut fraction_micros = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            if pos - start < 6 {
                fraction_micros = fraction_micros * 10 + i64::from(b[pos] - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return Err(bad());
        }
        for _ in (pos - start).min(6)..6 {
            fraction_micros *= 10;
        }
    }
    let offset_seconds = match &b[pos..] {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = i64::from(digits(pos + 1..pos + 3)?);
            let minutes = i64::from(digits(pos + 4..pos + 6)?);
            if hours > 14 || minutes > 59 {
                return Err(format!("impossible offset in {text:?}"));
            }
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return Err(bad()),
    };
    let local_seconds = i64::from(hour * 3600 + minute * 60 + second.min(59));
    Ok(midnight + (local_seconds - offset_seconds) * 1_000_000 + fraction_micros)
}

/// `NaiveDate::from_ymd(1970, 1, 1).num_days_from_ce()`.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// The year of a FHIR date (`birthDate` → birth year), validated like any other date.
pub fn parse_fhir_year(text: &str) -> Result<i32, String> {
    let micros = parse_fhir_datetime(text)?;
    Ok(DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|d| d.year())
        .unwrap_or_default())
}

/// A Hudi instant (`yyyyMMddHHmmssSSS`, UTC) for a time in microseconds.
pub fn hudi_instant(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y%m%d%H%M%S%3f")
        .to_string()
}

/// Microseconds since the epoch of a Hudi instant.
pub fn parse_hudi_instant(instant: &str) -> Option<i64> {
    if instant.len() != 17 || !instant.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}.{}Z",
        &instant[0..4],
        &instant[4..6],
        &instant[6..8],
        &instant[8..10],
        &instant[10..12],
        &instant[12..14],
        &instant[14..17]
    );
    parse_fhir_datetime(&iso).ok()
}

pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// RFC 3339 text of a UTC microsecond timestamp, for ledger rows and messages.
pub fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(iso: &str) -> i64 {
        DateTime::parse_from_rfc3339(iso)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn parses_every_fhir_precision() {
        assert_eq!(
            parse_fhir_datetime("2021").unwrap(),
            micros("2021-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_fhir_datetime("2021-03").unwrap(),
            micros("2021-03-01T00:00:00Z")
        );
        assert_eq!(
            parse_fhir_datetime("2021-03-04").unwrap(),
            micros("2021-03-04T00:00:00Z")
        );
        assert_eq!(
            parse_fhir_datetime("2021-03-04T10:15:30Z").unwrap(),
            micros("2021-03-04T10:15:30Z")
        );
        assert_eq!(
            parse_fhir_datetime("2021-03-04T10:15:30.123456789+02:00").unwrap(),
            micros("2021-03-04T08:15:30.123456Z")
        );
    }

    #[test]
    fn an_offset_can_move_the_utc_date() {
        let late_evening_in_new_york = parse_fhir_datetime("2021-01-31T23:30:00-05:00").unwrap();
        assert_eq!(
            utc_day(late_evening_in_new_york),
            utc_day(micros("2021-02-01T00:00:00Z"))
        );
    }

    #[test]
    fn rejects_impossible_and_malformed_values() {
        for bad in [
            "",
            "2023-02-30",
            "2023-13-01",
            "20230101",
            "2023-01-01T25:00:00Z",
            "2023-01-01T10:00",
            "2023-01-01T10:00:00+5",
            "2023-01-01 10:00:00Z",
            "abcd",
            "2023-01-01T10:00:00.Z",
        ] {
            assert!(
                parse_fhir_datetime(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn hudi_instants_round_trip() {
        let t = micros("2024-05-06T07:08:09.123Z");
        assert_eq!(hudi_instant(t), "20240506070809123");
        assert_eq!(parse_hudi_instant("20240506070809123"), Some(t));
        assert_eq!(parse_hudi_instant("2024"), None);
    }
}
