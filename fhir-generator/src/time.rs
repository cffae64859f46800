//! Calendar arithmetic on the proleptic Gregorian calendar, FHIR dateTime
//! formatting and strict parsing. Days are counted from 1970-01-01 (day 0),
//! instants are Unix seconds.

pub const SECS_PER_DAY: i64 = 86_400;

/// Day number (days since 1970-01-01) of a civil date.
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = if month <= 2 {
        year as i64 - 1
    } else {
        year as i64
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date `(year, month, day)` of a day number.
pub const fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y as i32, m as u32, d as u32)
}

pub const fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub const fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A point in time as written in a FHIR dateTime: the UTC instant plus the
/// offset it is displayed with. Metrics only ever look at `utc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts {
    /// Unix seconds (UTC).
    pub utc: i64,
    /// Offset from UTC in minutes used when the value is written (`0` is `Z`).
    pub offset_min: i16,
}

impl Ts {
    pub const fn new(utc: i64, offset_min: i16) -> Self {
        Ts { utc, offset_min }
    }

    /// Builds from local wall-clock fields and an offset (handy in tests):
    /// `Ts::local(2024, 3, 1, 23, 30, 0, -300)` is 2024-03-01T23:30:00-05:00.
    pub const fn local(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        offset_min: i16,
    ) -> Self {
        let local = days_from_civil(year, month, day) * SECS_PER_DAY
            + (hour * 3600 + minute * 60 + second) as i64;
        Ts {
            utc: local - offset_min as i64 * 60,
            offset_min,
        }
    }

    /// UTC calendar day number of the instant.
    pub const fn utc_day(&self) -> i64 {
        self.utc.div_euclid(SECS_PER_DAY)
    }

    /// The calendar day on a clock `clock_min` minutes east of UTC (a tenant's time zone). An
    /// instant at exactly midnight UTC is a FHIR date without a time, the same day on every
    /// clock (docs/metrics.md, "Dates").
    pub const fn day_on(&self, clock_min: i32) -> i64 {
        if self.utc.rem_euclid(SECS_PER_DAY) == 0 {
            return self.utc_day();
        }
        (self.utc + clock_min as i64 * 60).div_euclid(SECS_PER_DAY)
    }

    /// Writes `YYYY-MM-DDThh:mm:ss` followed by `Z` or `+hh:mm`/`-hh:mm`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let local = self.utc + i64::from(self.offset_min) * 60;
        write_date(out, local.div_euclid(SECS_PER_DAY));
        out.push(b'T');
        write_time(out, local.rem_euclid(SECS_PER_DAY));
        if self.offset_min == 0 {
            out.push(b'Z');
        } else {
            let off = i32::from(self.offset_min);
            out.push(if off < 0 { b'-' } else { b'+' });
            let a = off.unsigned_abs();
            push2(out, a / 60);
            out.push(b':');
            push2(out, a % 60);
        }
    }

    pub fn to_fhir(&self) -> String {
        let mut v = Vec::with_capacity(25);
        self.write_to(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }
}

fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn push4(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 1000 % 10) as u8);
    out.push(b'0' + (v / 100 % 10) as u8);
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Writes a day number as `YYYY-MM-DD` (years 0..=9999).
pub fn write_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    push4(out, y.clamp(0, 9999) as u32);
    out.push(b'-');
    push2(out, m);
    out.push(b'-');
    push2(out, d);
}

fn write_time(out: &mut Vec<u8>, secs_of_day: i64) {
    let s = secs_of_day as u32;
    push2(out, s / 3600);
    out.push(b':');
    push2(out, s / 60 % 60);
    out.push(b':');
    push2(out, s % 60);
}

/// Writes a UTC instant with milliseconds: `YYYY-MM-DDThh:mm:ss.mmmZ`
/// (the shape of `meta.lastUpdated`).
pub fn write_instant_ms(out: &mut Vec<u8>, ms: i64) {
    let secs = ms.div_euclid(1000);
    write_date(out, secs.div_euclid(SECS_PER_DAY));
    out.push(b'T');
    write_time(out, secs.rem_euclid(SECS_PER_DAY));
    out.push(b'.');
    let frac = ms.rem_euclid(1000) as u32;
    out.push(b'0' + (frac / 100) as u8);
    push2(out, frac % 100);
    out.push(b'Z');
}

/// `YYYY-MM` label of a day number.
pub fn month_label(days: i64) -> String {
    let (y, m, _) = civil_from_days(days);
    format!("{y:04}-{m:02}")
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0')))
}

/// Strictly parses `YYYY-MM-DD`, rejecting impossible dates such as
/// `2023-02-30`. Returns the day number.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])? as i32;
    let m = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Strictly parses a full FHIR dateTime with time and zone:
/// `YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm)`. Fractions are
/// truncated to whole seconds. Impossible calendar dates are rejected.
pub fn parse_datetime(s: &str) -> Option<Ts> {
    let b = s.as_bytes();
    if b.len() < 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let day = parse_date(s.get(0..10)?)?;
    let hh = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let ss = digits(&b[17..19])?;
    if hh > 23 || mi > 59 || ss > 59 {
        return None;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &rest[1 + n..];
    }
    let offset_min: i16 = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2])?;
            let om = digits(&[*m1, *m2])?;
            if oh > 14 || om > 59 {
                return None;
            }
            let v = (oh * 60 + om) as i16;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let local = day * SECS_PER_DAY + i64::from(hh * 3600 + mi * 60 + ss);
    Some(Ts {
        utc: local - i64::from(offset_min) * 60,
        offset_min,
    })
}

/// Parses `meta.lastUpdated` (an instant) to Unix milliseconds.
pub fn parse_instant_ms(s: &str) -> Option<i64> {
    let ts = parse_datetime(s)?;
    let frac = s
        .find('.')
        .map(|i| {
            let f: String = s[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .chain("000".chars())
                .take(3)
                .collect();
            f.parse::<i64>().unwrap_or(0)
        })
        .unwrap_or(0);
    Some(ts.utc * 1000 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_on_a_clock_and_a_date_without_a_time() {
        // 23:30 UTC on 31 January is 1 February nine hours east, still 31 January five west
        let evening = Ts::new(
            days_from_civil(2024, 1, 31) * SECS_PER_DAY + 23 * 3600 + 1800,
            0,
        );
        assert_eq!(evening.day_on(540), days_from_civil(2024, 2, 1));
        assert_eq!(evening.day_on(-300), days_from_civil(2024, 1, 31));
        // Exactly midnight UTC is a date: the same day on every clock
        let midnight = Ts::new(days_from_civil(2024, 3, 5) * SECS_PER_DAY, 0);
        assert_eq!(midnight.day_on(-300), days_from_civil(2024, 3, 5));
        assert_eq!(midnight.day_on(540), days_from_civil(2024, 3, 5));
    }

    #[test]
    fn civil_round_trip() {
        for d in days_from_civil(1899, 12, 25)..days_from_civil(2101, 1, 7) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn format_and_parse() {
        let t = Ts::local(2024, 3, 1, 23, 30, 0, -300);
        assert_eq!(t.to_fhir(), "2024-03-01T23:30:00-05:00");
        assert_eq!(t.utc_day(), days_from_civil(2024, 3, 2));
        assert_eq!(parse_datetime("2024-03-01T23:30:00-05:00"), Some(t));
        let z = Ts::local(2024, 3, 2, 4, 30, 0, 0);
        assert_eq!(z.to_fhir(), "2024-03-02T04:30:00Z");
        assert_eq!(z.utc, t.utc);
        let india = Ts::local(2023, 1, 1, 1, 0, 0, 330);
        assert_eq!(india.to_fhir(), "2023-01-01T01:00:00+05:30");
        assert_eq!(india.utc_day(), days_from_civil(2022, 12, 31));
        assert_eq!(parse_datetime("2023-02-30T10:00:00Z"), None);
        assert_eq!(parse_datetime("2023-02-28T24:00:00Z"), None);
        assert_eq!(parse_datetime("2023-02-28T10:00:00"), None);
        assert!(parse_datetime("2023-02-28T10:00:00.123+02:00").is_some());
        assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        assert_eq!(parse_date("2023-02-29"), None);
        let mut v = Vec::new();
        write_instant_ms(&mut v, days_from_civil(2026, 1, 2) * 86_400_000 + 3_723_045);
        assert_eq!(String::from_utf8(v).unwrap(), "2026-01-02T01:02:03.045Z");
        assert_eq!(
            parse_instant_ms("2026-01-02T01:02:03.045Z"),
            Some(days_from_civil(2026, 1, 2) * 86_400_000 + 3_723_045)
        );
        assert_eq!(month_label(days_from_civil(2025, 12, 31)), "2025-12");
    }
}
