//! Date/time nodes: GetCurrentDateTime, FormatDateTime, ParseDateTime, DateTimeAdd,
//! DateTimeDiff, DateTimeCompare and GetTimestamp (upstream `datetime_nodes.py`).
//!
//! Values follow Python's `datetime`: a datetime is *naive* (local wall time, what upstream's
//! `datetime.now()` and `datetime.fromtimestamp()` give) or *aware* (a fixed UTC offset, from ISO
//! text with `Z`/`+02:00`, `%z`, or a `timezone` parameter), with microsecond precision and years
//! 1..=9999. Outputs print like Python: `isoformat()` (`2024-01-02T03:04:05`, `.123456` only when
//! the microseconds are not zero, `+00:00` when aware), `timestamp()` floats, naive/aware mixing
//! is a `TypeError` for ordering and subtraction. Formats use Python's strftime/strptime codes:
//! strptime is Python's own algorithm (the same per-directive regexes, whole-input match, 1900-01-01
//! defaults, `%y` pivot at 69, `%I`/`%p`, `%j`, `%z`), strftime maps the codes onto chrono (`%f` is
//! microseconds; `%z`/`%Z` print nothing for naive values; unknown codes stay literal, as glibc).
//!
//! Deviations from upstream, and why:
//! * No timezone database is available: `timezone` accepts "" / "local" (naive local time, as
//!   upstream's default), "UTC" and fixed offsets ("+02:00", "UTC-05:30"); any other name is an
//!   error naming it (upstream silently fell back to local time).
//! * Every node accepts the same inputs (upstream differed per node): an explicit format if given,
//!   else upstream's common formats ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
//!   "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y", "%m/%d/%Y %H:%M:%S",
//!   "%m/%d/%Y", "%d-%m-%Y", "%Y/%m/%d", in that order), else ISO 8601 (Python 3.11
//!   `fromisoformat`: date-only, `T` or another separator, basic or extended, `Z`), else numeric
//!   text as a Unix timestamp. Numbers are Unix timestamps in seconds, or in milliseconds when
//!   larger than 1e11 (upstream failed on millisecond timestamps).
//! * DateTimeAdd keeps upstream's approximations: a year is 365 days and a month 30 days. Its
//!   amounts are truncated to integers as upstream's `safe_int`, but non-numeric text is an error
//!   (upstream silently used 0).
//! * DateTimeDiff's `days/hours/minutes/seconds` are upstream's breakdown of the absolute
//!   difference with the sign carried by `days` only (not `timedelta`'s normalised days = -1,
//!   hours = 23 for minus one hour).

use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::Value;
use chrono::format::{Item, StrftimeItems};
use chrono::{
    DateTime, Datelike, FixedOffset, Local, LocalResult, NaiveDate, NaiveDateTime, NaiveTime,
    TimeDelta, TimeZone, Timelike, Utc,
};
use regex::Regex;
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "GetCurrentDateTimeNode",
        &[opt("timezone", Lit::Str("")), opt("format", Lit::Str(""))],
        &[
            "datetime",
            "timestamp",
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "day_of_week",
        ],
        get_current_datetime,
    ),
    NodeDef::plain(
        "FormatDateTimeNode",
        &[
            req("datetime"),
            opt("input_format", Lit::Null),
            opt("format", Lit::Str("%Y-%m-%d %H:%M:%S")),
        ],
        &["result"],
        format_datetime,
    ),
    NodeDef::plain(
        "ParseDateTimeNode",
        &[req("datetime_string"), opt("format", Lit::Str(""))],
        &[
            "timestamp",
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "iso_format",
            "success",
        ],
        parse_datetime,
    ),
    NodeDef::plain(
        "DateTimeAddNode",
        &[
            opt("datetime", Lit::Null),
            opt("years", Lit::Int(0)),
            opt("months", Lit::Int(0)),
            opt("weeks", Lit::Int(0)),
            opt("days", Lit::Int(0)),
            opt("hours", Lit::Int(0)),
            opt("minutes", Lit::Int(0)),
            opt("seconds", Lit::Int(0)),
        ],
        &["result", "timestamp"],
        datetime_add,
    ),
    NodeDef::plain(
        "DateTimeDiffNode",
        &[req("datetime_1"), req("datetime_2")],
        &[
            "total_seconds",
            "total_minutes",
            "total_hours",
            "total_days",
            "days",
            "hours",
            "minutes",
            "seconds",
        ],
        datetime_diff,
    ),
    NodeDef::plain(
        "DateTimeCompareNode",
        &[req("datetime_1"), req("datetime_2")],
        &["is_before", "is_after", "is_equal", "comparison"],
        datetime_compare,
    ),
    NodeDef::plain(
        "GetTimestampNode",
        &[opt("milliseconds", Lit::Bool(false))],
        &["timestamp"],
        get_timestamp,
    ),
];

/// The formats tried, in order, when no explicit format is given (upstream's lists, merged).
const COMMON_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y",
    "%d-%m-%Y",
    "%Y/%m/%d",
];

const DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

const US: i64 = 1_000_000;

/// A Python `datetime`: naive (wall time) or aware (fixed offset). Microsecond precision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dt {
    /// No offset: local wall time.
    Naive(NaiveDateTime),
    /// With a fixed UTC offset.
    Aware(DateTime<FixedOffset>),
}

fn overflow() -> NodeError {
    NodeError::new("OverflowError", "date value out of range")
}

fn trunc_us(n: NaiveDateTime) -> NaiveDateTime {
    n.with_nanosecond(n.nanosecond() / 1000 * 1000).unwrap_or(n)
}

fn epoch() -> NaiveDateTime {
    DateTime::UNIX_EPOCH.naive_utc()
}

/// Microseconds of `a - b`.
fn micros_between(a: NaiveDateTime, b: NaiveDateTime) -> i64 {
    (a - b).num_microseconds().unwrap_or(i64::MAX)
}

/// The UTC offset (seconds) of local wall time `n`, as Python resolves it (`fold=0`).
fn local_offset(n: &NaiveDateTime) -> i32 {
    match Local.from_local_datetime(n) {
        LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => d.offset().local_minus_utc(),
        LocalResult::None => Local.offset_from_utc_datetime(n).local_minus_utc(),
    }
}

impl Dt {
    /// The wall-clock date and time.
    fn wall(&self) -> NaiveDateTime {
        match self {
            Dt::Naive(n) => *n,
            Dt::Aware(d) => d.naive_local(),
        }
    }

    /// Years must stay in Python's 1..=9999.
    fn checked(self) -> Result<Dt, NodeError> {
        let y = self.wall().year();
        if (1..=9999).contains(&y) {
            Ok(self)
        } else {
            Err(overflow())
        }
    }

    /// Microseconds since the Unix epoch (naive values are local time).
    fn epoch_micros(&self) -> i64 {
        match self {
            Dt::Naive(n) => micros_between(*n, epoch()) - i64::from(local_offset(n)) * US,
            Dt::Aware(d) => micros_between(d.naive_utc(), epoch()),
        }
    }

    /// Python `dt.timestamp()`.
    fn timestamp(&self) -> f64 {
        let us = self.epoch_micros();
        match self {
            Dt::Naive(_) => us.div_euclid(US) as f64 + us.rem_euclid(US) as f64 / 1e6,
            Dt::Aware(_) => us as f64 / 1e6,
        }
    }

    /// Python `dt.isoformat()`.
    fn isoformat(&self) -> String {
        let w = self.wall();
        let mut s = w.format("%Y-%m-%dT%H:%M:%S").to_string();
        let us = w.nanosecond() / 1000;
        if us != 0 {
            let _ = write!(s, ".{us:06}");
        }
        if let Dt::Aware(d) = self {
            s.push_str(&offset_text(d.offset().local_minus_utc()));
        }
        s
    }

    /// Add `micros` microseconds (wall-clock arithmetic, as Python).
    fn add_micros(self, micros: i64) -> Result<Dt, NodeError> {
        let delta = TimeDelta::microseconds(micros);
        let out = match self {
            Dt::Naive(n) => n.checked_add_signed(delta).map(Dt::Naive),
            Dt::Aware(d) => d.checked_add_signed(delta).map(Dt::Aware),
        };
        out.ok_or_else(overflow)?.checked()
    }

    /// Python `self - other` in microseconds.
    fn sub(&self, other: &Dt) -> Result<i64, NodeError> {
        match (self, other) {
            (Dt::Naive(a), Dt::Naive(b)) => Ok(micros_between(*a, *b)),
            (Dt::Aware(a), Dt::Aware(b)) => Ok(micros_between(a.naive_utc(), b.naive_utc())),
            _ => Err(NodeError::type_error(
                "can't subtract offset-naive and offset-aware datetimes",
            )),
        }
    }

    /// Python ordering (`<`); naive against aware is a `TypeError`.
    fn cmp(&self, other: &Dt) -> Result<Ordering, NodeError> {
        match (self, other) {
            (Dt::Naive(a), Dt::Naive(b)) => Ok(a.cmp(b)),
            (Dt::Aware(a), Dt::Aware(b)) => Ok(a.naive_utc().cmp(&b.naive_utc())),
            _ => Err(NodeError::type_error(
                "can't compare offset-naive and offset-aware datetimes",
            )),
        }
    }
}

/// `+HH:MM` (with `:SS` when needed), as Python prints offsets.
fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let mut s = format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60);
    if !a.is_multiple_of(60) {
        let _ = write!(s, ":{:02}", a % 60);
    }
    s
}

/// Python's `tzname()` of a fixed offset: `UTC` or `UTC+02:00`.
fn tz_name(secs: i32) -> String {
    if secs == 0 {
        "UTC".to_string()
    } else {
        format!("UTC{}", offset_text(secs))
    }
}

/// Parse `+HH`, `+HH:MM`, `+HHMM`, `+HH:MM:SS[.ffffff]`, `+HHMMSS` into seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = &s[1..];
    let body = body.split('.').next()?;
    let digits: String = body.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || ![2, 4, 6].contains(&digits.len()) {
        return None;
    }
    if body.contains(':') && body.len() != digits.len() + digits.len() / 2 - 1 {
        return None;
    }
    let num = |i: usize| digits.get(i..i + 2).and_then(|p| p.parse::<i32>().ok());
    let h = num(0)?;
    let m = if digits.len() >= 4 { num(2)? } else { 0 };
    let sec = if digits.len() == 6 { num(4)? } else { 0 };
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + sec))
}

fn fixed(secs: i32) -> Result<FixedOffset, NodeError> {
    FixedOffset::east_opt(secs).ok_or_else(|| NodeError::value(format!("invalid offset {secs}")))
}

fn aware(n: NaiveDateTime, secs: i32) -> Result<Dt, NodeError> {
    match fixed(secs)?.from_local_datetime(&n) {
        LocalResult::Single(d) => Dt::Aware(d).checked(),
        _ => Err(overflow()),
    }
}

/// Python 3.11 `datetime.fromisoformat` (after upstream's `replace("Z", "+00:00")`).
fn parse_iso(s: &str) -> Option<Dt> {
    if !s.is_ascii() {
        return None;
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let p = s.get(r)?;
        p.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| p.parse().ok())?
    };
    let (date, rest) = if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        (
            NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?,
            &s[10..],
        )
    } else if b.len() >= 8 && num(0..8).is_some() {
        (
            NaiveDate::from_ymd_opt(num(0..4)? as i32, num(4..6)?, num(6..8)?)?,
            &s[8..],
        )
    } else {
        return None;
    };
    if date.year() < 1 {
        return None;
    }
    if rest.is_empty() {
        return Some(Dt::Naive(date.and_time(NaiveTime::MIN)));
    }
    let time = &rest[1..];
    let (main, tz) = match time.find(['+', '-', 'Z']) {
        Some(i) => (&time[..i], Some(&time[i..])),
        None => (time, None),
    };
    let (hms, frac) = match main.find(['.', ',']) {
        Some(i) => (&main[..i], Some(&main[i + 1..])),
        None => (main, None),
    };
    let fields: Vec<u32> = if hms.contains(':') {
        let parts: Vec<&str> = hms.split(':').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        parts
            .iter()
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?
    } else {
        if ![2, 4, 6].contains(&hms.len()) || !hms.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        (0..hms.len() / 2)
            .map(|i| hms[2 * i..2 * i + 2].parse().ok())
            .collect::<Option<_>>()?
    };
    if frac.is_some() && fields.len() != 3 {
        return None;
    }
    let micro = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => {
            let mut d: String = f.chars().take(6).collect();
            while d.len() < 6 {
                d.push('0');
            }
            d.parse().ok()?
        }
        Some(_) => return None,
    };
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    let t = NaiveTime::from_hms_micro_opt(get(0), get(1), get(2), micro)?;
    let n = date.and_time(t);
    match tz {
        None => Some(Dt::Naive(n)),
        Some("Z") => aware(n, 0).ok(),
        Some(o) => aware(n, parse_offset(o)?).ok(),
    }
}

/// The regex of one strptime directive (Python's `_strptime.TimeRE`, C locale).
fn directive_regex(d: char) -> Option<String> {
    let alts = |names: &[&str], n: usize| -> String {
        let mut v: Vec<String> = names.iter().map(|s| s.chars().take(n).collect()).collect();
        v.sort_by_key(|s: &String| std::cmp::Reverse(s.len()));
        v.join("|")
    };
    let re = match d {
        'd' => r"3[01]|[12]\d|0[1-9]|[1-9]| [1-9]".to_string(),
        'f' => r"[0-9]{1,6}".to_string(),
        'H' => r"2[0-3]|[0-1]\d|\d".to_string(),
        'I' => r"1[0-2]|0[1-9]|[1-9]".to_string(),
        'j' => r"36[0-6]|3[0-5]\d|[12]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9]".to_string(),
        'm' => r"1[0-2]|0[1-9]|[1-9]".to_string(),
        'M' => r"[0-5]\d|\d".to_string(),
        'S' => r"6[0-1]|[0-5]\d|\d".to_string(),
        'w' => r"[0-6]".to_string(),
        'u' => r"[1-7]".to_string(),
        'y' => r"\d\d".to_string(),
        'Y' => r"\d\d\d\d".to_string(),
        'z' => r"[+-]\d\d:?[0-5]\d(?::?[0-5]\d(?:\.\d{1,6})?)?|(?-i:Z)".to_string(),
        'Z' => "utc|gmt".to_string(),
        'p' => "am|pm".to_string(),
        'b' => alts(&MONTHS, 3),
        'B' => alts(&MONTHS, 9),
        'a' => alts(&WEEKDAYS, 3),
        'A' => alts(&WEEKDAYS, 9),
        _ => return None,
    };
    Some(format!("(?P<{d}>{re})"))
}

/// Translate a strptime format into an anchored, case-insensitive regex (Python's algorithm).
fn strptime_regex(fmt: &str) -> Result<Regex, NodeError> {
    fn walk(fmt: &str, whole: &str, out: &mut String, depth: u8) -> Result<(), NodeError> {
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '%' {
                let Some(d) = chars.next() else {
                    return Err(NodeError::value(format!("stray % in format '{whole}'")));
                };
                match d {
                    '%' => out.push('%'),
                    'c' if depth == 0 => walk("%a %b %d %H:%M:%S %Y", whole, out, 1)?,
                    'x' if depth == 0 => walk("%m/%d/%y", whole, out, 1)?,
                    'X' if depth == 0 => walk("%H:%M:%S", whole, out, 1)?,
                    'U' | 'W' | 'G' | 'V' => {
                        return Err(NodeError::value(format!(
                            "directive %{d} is not supported for parsing (format '{whole}')"
                        )))
                    }
                    _ => match directive_regex(d) {
                        Some(re) => out.push_str(&re),
                        None => {
                            return Err(NodeError::value(format!(
                                "'{d}' is a bad directive in format '{whole}'"
                            )))
                        }
                    },
                }
            } else if c.is_whitespace() {
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                out.push_str(r"\s+");
            } else {
                out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
            }
        }
        Ok(())
    }
    let mut out = String::from("(?i)^(?:");
    walk(fmt, fmt, &mut out, 0)?;
    out.push(')');
    Regex::new(&out)
        .map_err(|_| NodeError::value(format!("invalid format '{fmt}' (is a directive repeated?)")))
}

/// Python `datetime.strptime(text, fmt)` with a compiled format.
fn strptime_with(text: &str, fmt: &str, re: &Regex) -> Result<Dt, NodeError> {
    let caps = re.captures(text).ok_or_else(|| {
        NodeError::value(format!("time data '{text}' does not match format '{fmt}'"))
    })?;
    let end = caps.get(0).map_or(0, |m| m.end());
    if end != text.len() {
        return Err(NodeError::value(format!(
            "unconverted data remains: {}",
            &text[end..]
        )));
    }
    let g = |n: &str| caps.name(n).map(|m| m.as_str().trim());
    let int = |n: &str| g(n).and_then(|s| s.parse::<i64>().ok());
    let name_index = |n: &str, names: &[&str]| {
        g(n).and_then(|s| {
            let s = s.to_lowercase();
            names.iter().position(|m| m.starts_with(&s))
        })
    };
    let year = match (int("Y"), int("y")) {
        (Some(y), _) => y,
        (None, Some(y)) if y <= 68 => 2000 + y,
        (None, Some(y)) => 1900 + y,
        _ => 1900,
    };
    let month = int("m")
        .or_else(|| name_index("b", &MONTHS).map(|i| i as i64 + 1))
        .or_else(|| name_index("B", &MONTHS).map(|i| i as i64 + 1))
        .unwrap_or(1);
    let day = int("d").unwrap_or(1);
    let hour = match (int("H"), int("I")) {
        (Some(h), _) => h,
        (None, Some(h)) => {
            let pm = g("p").is_some_and(|p| p.eq_ignore_ascii_case("pm"));
            match (pm, h) {
                (false, 12) => 0,
                (true, 12) => 12,
                (true, h) => h + 12,
                (false, h) => h,
            }
        }
        _ => 0,
    };
    let minute = int("M").unwrap_or(0);
    let second = int("S").unwrap_or(0);
    let micro = g("f").map_or(0, |f| {
        let mut d = f.to_string();
        while d.len() < 6 {
            d.push('0');
        }
        d.parse::<i64>().unwrap_or(0)
    });
    if !(1..=9999).contains(&year) {
        return Err(NodeError::value(format!("year {year} is out of range")));
    }
    let date = match int("j") {
        Some(j) => NaiveDate::from_ymd_opt(year as i32, 1, 1)
            .and_then(|d| d.checked_add_signed(TimeDelta::days(j - 1)))
            .ok_or_else(overflow)?,
        None => NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)
            .ok_or_else(|| NodeError::value("day is out of range for month"))?,
    };
    if second > 59 {
        return Err(NodeError::value("second must be in 0..59"));
    }
    let time =
        NaiveTime::from_hms_micro_opt(hour as u32, minute as u32, second as u32, micro as u32)
            .ok_or_else(|| NodeError::value("invalid time"))?;
    let n = date.and_time(time);
    match g("z") {
        None => Dt::Naive(n).checked(),
        Some("Z" | "z") => aware(n, 0),
        Some(z) => aware(
            n,
            parse_offset(z)
                .ok_or_else(|| NodeError::value(format!("inconsistent use of : in {z}")))?,
        ),
    }
}

/// Python `datetime.strptime(text, fmt)`.
fn strptime(text: &str, fmt: &str) -> Result<Dt, NodeError> {
    strptime_with(text, fmt, &strptime_regex(fmt)?)
}

fn common_formats() -> &'static [(&'static str, Regex)] {
    static CACHE: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    CACHE.get_or_init(|| {
        COMMON_FORMATS
            .iter()
            .filter_map(|f| strptime_regex(f).ok().map(|re| (*f, re)))
            .collect()
    })
}

/// Python `datetime.fromtimestamp(ts)` (naive local time); values above 1e11 are milliseconds.
fn from_timestamp(ts: f64) -> Result<Dt, NodeError> {
    if !ts.is_finite() {
        return Err(NodeError::value(format!("invalid timestamp {ts}")));
    }
    let ts = if ts.abs() > 1e11 { ts / 1000.0 } else { ts };
    let mut secs = ts.floor();
    let mut us = ((ts - secs) * 1e6).round_ties_even();
    if us >= 1e6 {
        secs += 1.0;
        us -= 1e6;
    }
    if secs.abs() > 1e15 {
        return Err(NodeError::new(
            "OverflowError",
            format!("timestamp {ts} is out of range"),
        ));
    }
    let utc = DateTime::from_timestamp(secs as i64, us as u32 * 1000).ok_or_else(|| {
        NodeError::new("OverflowError", format!("timestamp {ts} is out of range"))
    })?;
    Dt::Naive(utc.with_timezone(&Local).naive_local())
        .checked()
        .map_err(|_| NodeError::value(format!("year is out of range for timestamp {ts}")))
}

/// Parse text with the common formats, then ISO 8601, then as a number.
fn parse_text(s: &str) -> Result<Dt, NodeError> {
    let t = s.trim();
    for (fmt, re) in common_formats() {
        if let Ok(dt) = strptime_with(t, fmt, re) {
            return Ok(dt);
        }
    }
    if let Some(dt) = parse_iso(&t.replace('Z', "+00:00")) {
        return Ok(dt);
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() {
            return from_timestamp(f);
        }
    }
    Err(NodeError::value(format!(
        "cannot parse '{t}' as a datetime: expected ISO 8601 (2024-01-02T03:04:05), a Unix \
         timestamp, or one of the formats {}",
        COMMON_FORMATS.join(", ")
    )))
}

/// Convert an input value: numbers are timestamps, text is parsed (with `fmt` when not empty).
fn to_dt(name: &str, v: &Value, fmt: Option<&str>) -> Result<Dt, NodeError> {
    match v {
        Value::Int(i) => from_timestamp(*i as f64),
        Value::Float(f) => from_timestamp(*f),
        Value::Str(s) => match fmt.filter(|f| !f.is_empty()) {
            Some(f) => strptime(s, f),
            None => parse_text(s),
        },
        other => Err(NodeError::type_error(format!(
            "input '{name}': cannot parse a datetime from {} {}",
            other.type_name(),
            other.py_repr()
        ))),
    }
}

/// Python `dt.strftime(fmt)` (glibc): codes mapped onto chrono, unknown codes kept literally.
fn strftime(dt: &Dt, fmt: &str) -> Result<String, NodeError> {
    let offset = match dt {
        Dt::Aware(d) => Some(d.offset().local_minus_utc()),
        Dt::Naive(_) => None,
    };
    let mut cf = String::with_capacity(fmt.len() + 8);
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            cf.push(c);
            continue;
        }
        let flag = chars.next_if(|n| matches!(n, '-' | '_' | '0' | '^' | '#'));
        let Some(d) = chars.next() else {
            cf.push_str("%%");
            if let Some(f) = flag {
                cf.push(f);
            }
            break;
        };
        let literal = |cf: &mut String| {
            cf.push_str("%%");
            if let Some(f) = flag {
                cf.push(f);
            }
            cf.push(d);
        };
        match d {
            '%' => cf.push_str("%%"),
            'f' => cf.push_str("%6f"),
            'z' => {
                if offset.is_some() {
                    cf.push_str("%z");
                }
            }
            'Z' => {
                if let Some(o) = offset {
                    cf.push_str(&tz_name(o));
                }
            }
            ':' if chars.peek() == Some(&'z') => {
                chars.next();
                if offset.is_some() {
                    cf.push_str("%:z");
                }
            }
            _ => {
                let mut spec = String::from("%");
                if let Some(f) = flag {
                    spec.push(f);
                }
                spec.push(d);
                if StrftimeItems::new(&spec).any(|i| matches!(i, Item::Error)) {
                    literal(&mut cf);
                } else {
                    cf.push_str(&spec);
                }
            }
        }
    }
    let mut out = String::new();
    let res = match dt {
        Dt::Naive(n) => write!(out, "{}", n.format(&cf)),
        Dt::Aware(d) => write!(out, "{}", d.format(&cf)),
    };
    res.map_err(|_| NodeError::value(format!("invalid format string '{fmt}'")))?;
    Ok(out)
}

/// Where "now" is taken: local wall time (naive) or a fixed offset (aware).
enum Tz {
    Local,
    Fixed(i32),
}

/// The `timezone` parameter: "" / "local", "UTC" / "GMT" / "Z", or a fixed offset.
fn parse_tz(s: &str) -> Result<Tz, NodeError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "" | "local" => return Ok(Tz::Local),
        "utc" | "gmt" | "z" | "etc/utc" | "etc/gmt" => return Ok(Tz::Fixed(0)),
        _ => {}
    }
    let rest = ["utc", "gmt"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    parse_offset(rest).map(Tz::Fixed).ok_or_else(|| {
        NodeError::value(format!(
            "unsupported timezone '{t}': use UTC, local, or a fixed offset such as +02:00 (no \
             timezone database is available)"
        ))
    })
}

fn now(tz: &Tz) -> Result<Dt, NodeError> {
    Ok(match tz {
        Tz::Local => Dt::Naive(trunc_us(Local::now().naive_local())),
        Tz::Fixed(o) => {
            let d = Utc::now().with_timezone(&fixed(*o)?);
            Dt::Aware(d.with_nanosecond(d.nanosecond() / 1000 * 1000).unwrap_or(d))
        }
    })
}

/// The `year .. second` and `timestamp` outputs shared by several nodes.
fn set_components(ctx: &mut NodeCtx<'_>, dt: &Dt) {
    let w = dt.wall();
    ctx.set_output("timestamp", Value::Float(dt.timestamp()));
    ctx.set_output("year", Value::Int(i64::from(w.year())));
    ctx.set_output("month", Value::Int(i64::from(w.month())));
    ctx.set_output("day", Value::Int(i64::from(w.day())));
    ctx.set_output("hour", Value::Int(i64::from(w.hour())));
    ctx.set_output("minute", Value::Int(i64::from(w.minute())));
    ctx.set_output("second", Value::Int(i64::from(w.second())));
}

/// GetCurrentDateTimeNode: now (naive local time, or aware in `timezone`), as `format` (strftime)
/// or ISO text, with its timestamp, components and English `day_of_week`.
fn get_current_datetime(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let tz = parse_tz(&ctx.param_str("timezone"))?;
    let fmt = ctx.param_str("format");
    let dt = now(&tz)?;
    let text = if fmt.is_empty() {
        dt.isoformat()
    } else {
        strftime(&dt, &fmt)?
    };
    ctx.set_output("datetime", Value::from(text));
    set_components(ctx, &dt);
    let dow = DAY_NAMES[dt.wall().weekday().num_days_from_monday() as usize];
    ctx.set_output("day_of_week", Value::str(dow));
    Ok(Flow::Next)
}

/// FormatDateTimeNode: parse `datetime` (timestamp, `input_format`, common formats or ISO) and
/// format it with strftime `format` (default `%Y-%m-%d %H:%M:%S`).
fn format_datetime(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let input = ctx.require("datetime")?;
    let input_format = ctx.param_str("input_format");
    let fmt = ctx.param_str("format");
    let dt = to_dt("datetime", &input, Some(&input_format))?;
    let text = strftime(&dt, &fmt)?;
    ctx.set_output("result", Value::from(text));
    Ok(Flow::Next)
}

/// ParseDateTimeNode: parse `datetime_string` (with `format` when given, else auto-detect) into
/// its timestamp, components and `iso_format`; `success` is true (the node fails otherwise).
fn parse_datetime(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    ctx.set_output("success", Value::Bool(false));
    let input = ctx.param("datetime_string");
    if !input.truthy() {
        return Err(NodeError::value("datetime_string is required"));
    }
    let fmt = ctx.param_str("format");
    let dt = to_dt("datetime_string", &input, Some(&fmt))?;
    set_components(ctx, &dt);
    ctx.set_output("iso_format", Value::from(dt.isoformat()));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// An integer amount for DateTimeAdd: ints, floats truncated (upstream's `safe_int`), numeric text.
fn amount(ctx: &NodeCtx<'_>, name: &str) -> Result<i128, NodeError> {
    let v = ctx.param(name);
    let bad = || {
        NodeError::value(format!(
            "input '{name}' must be a whole number, got {} {}",
            v.type_name(),
            v.py_repr()
        ))
    };
    match &v {
        Value::Null => Ok(0),
        Value::Bool(b) => Ok(i128::from(*b)),
        Value::Int(i) => Ok(i128::from(*i)),
        Value::Float(f) if f.is_finite() && f.abs() < 1e30 => Ok(f.trunc() as i128),
        Value::Str(s) if s.trim().is_empty() => Ok(0),
        Value::Str(s) => {
            let t = s.trim();
            t.parse::<i128>()
                .ok()
                .or_else(|| {
                    t.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite() && f.abs() < 1e30)
                        .map(|f| f.trunc() as i128)
                })
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// DateTimeAddNode: `datetime` (now when empty) plus years·365 + months·30 + weeks·7 + days days,
/// hours, minutes and seconds (negative amounts subtract); `result` is ISO text.
fn datetime_add(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let input = ctx.param("datetime");
    let dt = match &input {
        Value::Null => now(&Tz::Local)?,
        Value::Str(s) if s.trim().is_empty() => now(&Tz::Local)?,
        v => to_dt("datetime", v, None)?,
    };
    let days = amount(ctx, "days")?
        + amount(ctx, "years")? * 365
        + amount(ctx, "months")? * 30
        + amount(ctx, "weeks")? * 7;
    let micros = days * 86_400 * i128::from(US)
        + amount(ctx, "hours")? * 3_600 * i128::from(US)
        + amount(ctx, "minutes")? * 60 * i128::from(US)
        + amount(ctx, "seconds")? * i128::from(US);
    // Anything beyond ~10^4 years leaves the 1..=9999 range anyway.
    let micros = i64::try_from(micros)
        .ok()
        .filter(|m| m.unsigned_abs() < 400_000_000_000_000_000)
        .ok_or_else(overflow)?;
    let out = dt.add_micros(micros)?;
    ctx.set_output("result", Value::from(out.isoformat()));
    ctx.set_output("timestamp", Value::Float(out.timestamp()));
    Ok(Flow::Next)
}

/// DateTimeDiffNode: `datetime_2 - datetime_1` as total seconds/minutes/hours/days (floats) and the
/// days/hours/minutes/seconds of the absolute difference (days carry the sign), as upstream.
fn datetime_diff(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let dt1 = to_dt("datetime_1", &ctx.require("datetime_1")?, None)?;
    let dt2 = to_dt("datetime_2", &ctx.require("datetime_2")?, None)?;
    let micros = dt2.sub(&dt1)?;
    let total = micros as f64 / 1e6;
    let abs_secs = micros.unsigned_abs() / 1_000_000;
    let mut days = (abs_secs / 86_400) as i64;
    if micros < 0 {
        days = -days;
    }
    ctx.set_output("total_seconds", Value::Float(total));
    ctx.set_output("total_minutes", Value::Float(total / 60.0));
    ctx.set_output("total_hours", Value::Float(total / 3600.0));
    ctx.set_output("total_days", Value::Float(total / 86400.0));
    ctx.set_output("days", Value::Int(days));
    ctx.set_output("hours", Value::Int((abs_secs % 86_400 / 3600) as i64));
    ctx.set_output("minutes", Value::Int((abs_secs % 3600 / 60) as i64));
    ctx.set_output("seconds", Value::Int((abs_secs % 60) as i64));
    Ok(Flow::Next)
}

/// DateTimeCompareNode: `is_before` (1 < 2), `is_after`, `is_equal` and `comparison` (-1, 0, 1).
/// Comparing a naive with an aware datetime is a `TypeError`, as in Python.
fn datetime_compare(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let dt1 = to_dt("datetime_1", &ctx.require("datetime_1")?, None)?;
    let dt2 = to_dt("datetime_2", &ctx.require("datetime_2")?, None)?;
    let ord = dt1.cmp(&dt2)?;
    ctx.set_output("is_before", Value::Bool(ord == Ordering::Less));
    ctx.set_output("is_after", Value::Bool(ord == Ordering::Greater));
    ctx.set_output("is_equal", Value::Bool(ord == Ordering::Equal));
    let c = match ord {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    };
    ctx.set_output("comparison", Value::Int(c));
    Ok(Flow::Next)
}

/// GetTimestampNode: the current Unix time in seconds (float), or milliseconds (float, ×1000).
fn get_timestamp(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let now = Utc::now();
    let mut ts = now.timestamp_micros() as f64 / 1e6;
    if ctx.param_bool("milliseconds") {
        ts *= 1000.0;
    }
    ctx.set_output("timestamp", Value::Float(ts));
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    fn out(node: &str, config: serde_json::Value, port: &str) -> Value {
        let ran = run_node(node, config, json!({}));
        assert!(ran.outcome.success(), "{}", ran.error());
        ran.out("n", port)
    }

    fn err(node: &str, config: serde_json::Value) -> String {
        let ran = run_node(node, config, json!({}));
        assert!(!ran.outcome.success(), "expected a failure");
        ran.error()
    }

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    /// The local-time timestamp Python gives a naive datetime.
    fn local_ts(s: &str) -> f64 {
        Dt::Naive(naive(s)).timestamp()
    }

    #[test]
    fn iso_parsing_and_printing() {
        let cases = [
            ("2024-01-02", "2024-01-02T00:00:00"),
            ("2024-01-02T03:04:05", "2024-01-02T03:04:05"),
            ("2024-01-02 03:04", "2024-01-02T03:04:00"),
            ("2024-01-02T03", "2024-01-02T03:00:00"),
            ("20240102T030405", "2024-01-02T03:04:05"),
            ("2024-01-02T03:04:05.5", "2024-01-02T03:04:05.500000"),
            (
                "2024-01-02T03:04:05,123456789",
                "2024-01-02T03:04:05.123456",
            ),
            ("2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05+00:00"),
            ("2024-01-02T03:04:05-0530", "2024-01-02T03:04:05-05:30"),
            (
                "2024-01-02T03:04:05.000001+02",
                "2024-01-02T03:04:05.000001+02:00",
            ),
            (
                "2024-01-02T03:04:05+05:30:15",
                "2024-01-02T03:04:05+05:30:15",
            ),
        ];
        for (text, want) in cases {
            let dt = parse_iso(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(dt.isoformat(), want, "{text}");
        }
        for bad in [
            "2024-13-01",
            "2024-02-30",
            "0000-01-01",
            "2024-01-02T",
            "2024-01-02T3:04",
            "2024-01-02T03:04:05+25:00",
            "2024-01-02T03:04.5",
            "hello",
        ] {
            assert!(parse_iso(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn get_current_datetime() {
        let before = Utc::now().timestamp_micros() as f64 / 1e6;
        let ran = run_node("GetCurrentDateTimeNode", json!({}), json!({}));
        assert!(ran.outcome.success(), "{}", ran.error());
        let text = ran.out("n", "datetime").py_str();
        let Some(Dt::Naive(n)) = parse_iso(&text) else {
            panic!("not a naive ISO datetime: {text}")
        };
        assert_eq!(ran.out("n", "year"), Value::Int(i64::from(n.year())));
        assert_eq!(ran.out("n", "month"), Value::Int(i64::from(n.month())));
        assert_eq!(ran.out("n", "day"), Value::Int(i64::from(n.day())));
        assert_eq!(ran.out("n", "hour"), Value::Int(i64::from(n.hour())));
        assert_eq!(ran.out("n", "minute"), Value::Int(i64::from(n.minute())));
        assert_eq!(ran.out("n", "second"), Value::Int(i64::from(n.second())));
        let dow = ran.out("n", "day_of_week").py_str();
        assert_eq!(dow, DAY_NAMES[n.weekday().num_days_from_monday() as usize]);
        let Value::Float(ts) = ran.out("n", "timestamp") else {
            panic!("timestamp is not a float")
        };
        assert!(ts >= before - 1.0 && ts < before + 60.0, "{ts} vs {before}");

        let utc = out(
            "GetCurrentDateTimeNode",
            json!({"timezone": "UTC"}),
            "datetime",
        );
        assert!(utc.py_str().ends_with("+00:00"), "{utc:?}");
        let plus2 = run_node(
            "GetCurrentDateTimeNode",
            json!({"timezone": "UTC+02:00"}),
            json!({}),
        );
        let text = plus2.out("n", "datetime").py_str();
        assert!(text.ends_with("+02:00"), "{text}");
        let Some(Dt::Aware(d)) = parse_iso(&text) else {
            panic!("{text}")
        };
        assert_eq!(plus2.out("n", "hour"), Value::Int(i64::from(d.hour())));
        let year = out(
            "GetCurrentDateTimeNode",
            json!({"format": "%Y|%Z|%z"}),
            "datetime",
        );
        assert_eq!(year.py_str(), format!("{}||", n.year()));
        let zone = out(
            "GetCurrentDateTimeNode",
            json!({"timezone": "-0330", "format": "%Z %z %:z"}),
            "datetime",
        );
        assert_eq!(zone.py_str(), "UTC-03:30 -0330 -03:30");
        assert_eq!(
            err(
                "GetCurrentDateTimeNode",
                json!({"timezone": "America/New_York"})
            ),
            "n (GetCurrentDateTimeNode): unsupported timezone 'America/New_York': use UTC, local, \
             or a fixed offset such as +02:00 (no timezone database is available)"
        );
    }

    #[test]
    fn format_datetime() {
        let cases: &[(serde_json::Value, serde_json::Value, &str)] = &[
            (
                json!({"datetime": "2024-01-02 03:04:05"}),
                json!(null),
                "2024-01-02 03:04:05",
            ),
            (
                json!({"datetime": "2024-01-02T03:04:05", "format": "%d.%m.%Y %H:%M"}),
                json!(null),
                "02.01.2024 03:04",
            ),
            (
                json!({"datetime": "2024-01-02T15:04:05.25Z",
                       "format": "%Y-%m-%dT%H:%M:%S.%f%z %Z"}),
                json!(null),
                "2024-01-02T15:04:05.250000+0000 UTC",
            ),
            (
                json!({"datetime": "2024-01-02 15:04:05",
                       "format": "%A %a %B %b %j %I%p %y %e %-d %% [%z%Z] %Q"}),
                json!(null),
                "Tuesday Tue January Jan 002 03PM 24  2 2 % [] %Q",
            ),
            (
                json!({"datetime": "01/02/2024", "format": "%Y-%m-%d"}),
                json!(null),
                "2024-02-01",
            ),
            (
                json!({"datetime": "02/13/2024", "format": "%Y-%m-%d"}),
                json!(null),
                "2024-02-13",
            ),
            (
                json!({"datetime": "02|01|2024", "input_format": "%d|%m|%Y", "format": "%x %X"}),
                json!(null),
                "01/02/24 00:00:00",
            ),
            (
                json!({"datetime": "2024-01-02", "format": "%c"}),
                json!(null),
                "Tue Jan  2 00:00:00 2024",
            ),
        ];
        for (config, _, want) in cases {
            assert_eq!(
                out("FormatDateTimeNode", config.clone(), "result").py_str(),
                *want,
                "{config}"
            );
        }
        // Numbers are Unix timestamps in local time; milliseconds are detected.
        let local = DateTime::from_timestamp(1_700_000_000, 0)
            .unwrap()
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        for ts in [
            json!(1_700_000_000),
            json!(1_700_000_000_000_i64),
            json!(1.7e9),
        ] {
            let got = out("FormatDateTimeNode", json!({"datetime": ts}), "result");
            assert_eq!(got.py_str(), local, "{ts}");
        }
        assert_eq!(
            err(
                "FormatDateTimeNode",
                json!({"datetime": "2024-01-02", "input_format": "%d/%m/%Y"})
            ),
            "n (FormatDateTimeNode): time data '2024-01-02' does not match format '%d/%m/%Y'"
        );
        assert!(
            err("FormatDateTimeNode", json!({"datetime": "next tuesday"}))
                .starts_with("n (FormatDateTimeNode): cannot parse 'next tuesday' as a datetime")
        );
        assert_eq!(
            err("FormatDateTimeNode", json!({"datetime": [1]})),
            "n (FormatDateTimeNode): input 'datetime': cannot parse a datetime from list [1]"
        );
    }

    #[test]
    fn parse_datetime() {
        let ran = run_node(
            "ParseDateTimeNode",
            json!({"datetime_string": "2024-03-05T06:07:08.5"}),
            json!({}),
        );
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(
            ran.out("n", "iso_format").py_str(),
            "2024-03-05T06:07:08.500000"
        );
        for (port, want) in [
            ("year", 2024),
            ("month", 3),
            ("day", 5),
            ("hour", 6),
            ("minute", 7),
            ("second", 8),
        ] {
            assert_eq!(ran.out("n", port), Value::Int(want), "{port}");
        }
        assert_eq!(ran.out("n", "success"), Value::Bool(true));
        assert_eq!(
            ran.out("n", "timestamp"),
            Value::Float(local_ts("2024-03-05 06:07:08.5"))
        );

        let aware = run_node(
            "ParseDateTimeNode",
            json!({"datetime_string": "2024-01-01T02:00:00+02:00"}),
            json!({}),
        );
        assert_eq!(aware.out("n", "timestamp"), Value::Float(1_704_067_200.0));

        let cases = [
            (
                "5 March 2024, 07:30 PM",
                "%d %B %Y, %I:%M %p",
                "2024-03-05T19:30:00",
            ),
            ("12:15 am", "%I:%M %p", "1900-01-01T00:15:00"),
            ("68", "%y", "2068-01-01T00:00:00"),
            ("69", "%y", "1969-01-01T00:00:00"),
            ("2024 060", "%Y %j", "2024-02-29T00:00:00"),
            ("Tue  jan 2 2024", "%a %b %d %Y", "2024-01-02T00:00:00"),
            (
                "2024-01-02 03:04:05.12 +0130",
                "%Y-%m-%d %H:%M:%S.%f %z",
                "2024-01-02T03:04:05.120000+01:30",
            ),
            ("2024-01-02Z", "%Y-%m-%d%z", "2024-01-02T00:00:00+00:00"),
            ("31-12-2023", "", "2023-12-31T00:00:00"),
            ("2023/12/31", "", "2023-12-31T00:00:00"),
            ("13/02/2024 10:11:12", "", "2024-02-13T10:11:12"),
        ];
        for (text, fmt, want) in cases {
            let got = out(
                "ParseDateTimeNode",
                json!({"datetime_string": text, "format": fmt}),
                "iso_format",
            );
            assert_eq!(got.py_str(), want, "{text} / {fmt}");
        }

        let errors = [
            (
                json!({"datetime_string": ""}),
                "datetime_string is required",
            ),
            (
                json!({"datetime_string": "2024-01-02x", "format": "%Y-%m-%d"}),
                "unconverted data remains: x",
            ),
            (
                json!({"datetime_string": "2024-02-30", "format": "%Y-%m-%d"}),
                "day is out of range for month",
            ),
            (
                json!({"datetime_string": "2024", "format": "%Y %Q"}),
                "'Q' is a bad directive in format '%Y %Q'",
            ),
            (
                json!({"datetime_string": "2024", "format": "%Y %"}),
                "stray % in format '%Y %'",
            ),
            (
                json!({"datetime_string": "2024 1", "format": "%Y %U"}),
                "directive %U is not supported for parsing (format '%Y %U')",
            ),
            (
                json!({"datetime_string": "2024 2024", "format": "%Y %Y"}),
                "invalid format '%Y %Y' (is a directive repeated?)",
            ),
        ];
        for (config, want) in errors {
            assert_eq!(
                err("ParseDateTimeNode", config.clone()),
                format!("n (ParseDateTimeNode): {want}"),
                "{config}"
            );
        }
    }

    #[test]
    fn datetime_add() {
        let cases: &[(serde_json::Value, &str)] = &[
            (
                json!({"datetime": "2024-01-31T10:00:00", "months": 1}),
                "2024-03-01T10:00:00",
            ),
            (
                json!({"datetime": "2024-01-31T10:00:00", "years": 1}),
                "2025-01-30T10:00:00",
            ),
            (
                json!({"datetime": "2024-01-31T10:00:00", "weeks": 2, "days": -1}),
                "2024-02-13T10:00:00",
            ),
            (
                json!({"datetime": "2024-01-01", "hours": -1, "minutes": 30, "seconds": "15"}),
                "2023-12-31T23:30:15",
            ),
            (
                json!({"datetime": "2024-01-01T00:00:00Z", "days": 1.9}),
                "2024-01-02T00:00:00+00:00",
            ),
            (
                json!({"datetime": "2024-01-01T00:00:00.5+02:00"}),
                "2024-01-01T00:00:00.500000+02:00",
            ),
        ];
        for (config, want) in cases {
            let ran = run_node("DateTimeAddNode", config.clone(), json!({}));
            assert!(ran.outcome.success(), "{}", ran.error());
            assert_eq!(ran.out("n", "result").py_str(), *want, "{config}");
        }
        let ts = out(
            "DateTimeAddNode",
            json!({"datetime": "2024-01-01T00:00:00+00:00", "days": 1}),
            "timestamp",
        );
        assert_eq!(ts, Value::Float(1_704_153_600.0));
        let ts = out(
            "DateTimeAddNode",
            json!({"datetime": "2024-01-01T00:00:00", "hours": 1}),
            "timestamp",
        );
        assert_eq!(ts, Value::Float(local_ts("2024-01-01 01:00:00")));

        // No datetime: now (naive local).
        let now = out("DateTimeAddNode", json!({"days": 1}), "result");
        let Some(Dt::Naive(n)) = parse_iso(&now.py_str()) else {
            panic!("{now:?}")
        };
        let expected = Local::now().naive_local() + TimeDelta::days(1);
        assert!((n - expected).num_seconds().abs() < 60);

        assert_eq!(
            err(
                "DateTimeAddNode",
                json!({"datetime": "9999-12-31", "days": 1})
            ),
            "n (DateTimeAddNode): date value out of range"
        );
        assert_eq!(
            err(
                "DateTimeAddNode",
                json!({"datetime": "2024-01-01", "years": 1_000_000_000_000_i64})
            ),
            "n (DateTimeAddNode): date value out of range"
        );
        assert_eq!(
            err(
                "DateTimeAddNode",
                json!({"datetime": "2024-01-01", "days": "soon"})
            ),
            "n (DateTimeAddNode): input 'days' must be a whole number, got str 'soon'"
        );
    }

    #[test]
    fn datetime_diff() {
        let ran = run_node(
            "DateTimeDiffNode",
            json!({"datetime_1": "2024-01-01T00:00:00", "datetime_2": "2024-01-02T03:04:05.5"}),
            json!({}),
        );
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(ran.out("n", "total_seconds").py_repr(), "97445.5");
        assert_eq!(ran.out("n", "total_minutes"), Value::Float(97445.5 / 60.0));
        assert_eq!(ran.out("n", "total_hours"), Value::Float(97445.5 / 3600.0));
        assert_eq!(ran.out("n", "total_days"), Value::Float(97445.5 / 86400.0));
        for (port, want) in [("days", 1), ("hours", 3), ("minutes", 4), ("seconds", 5)] {
            assert_eq!(ran.out("n", port), Value::Int(want), "{port}");
        }
        // Negative: components of the absolute value, the sign on days only (upstream).
        let ran = run_node(
            "DateTimeDiffNode",
            json!({"datetime_1": "2024-01-02T01:00:00Z", "datetime_2": "2024-01-01T00:00:00+00:00"}),
            json!({}),
        );
        assert_eq!(ran.out("n", "total_seconds").py_repr(), "-90000.0");
        assert_eq!(ran.out("n", "days"), Value::Int(-1));
        assert_eq!(ran.out("n", "hours"), Value::Int(1));
        // Offsets are honoured.
        let secs = out(
            "DateTimeDiffNode",
            json!({"datetime_1": "2024-01-01T02:00:00+02:00", "datetime_2": "2024-01-01T00:00:00Z"}),
            "total_seconds",
        );
        assert_eq!(secs.py_repr(), "0.0");
        assert_eq!(
            err(
                "DateTimeDiffNode",
                json!({"datetime_1": "2024-01-01", "datetime_2": "2024-01-01T00:00:00Z"})
            ),
            "n (DateTimeDiffNode): can't subtract offset-naive and offset-aware datetimes"
        );
    }

    #[test]
    fn datetime_compare() {
        let cases = [
            ("2024-01-01", "2024-01-02", [true, false, false], -1),
            ("2024-01-02 10:00:00", "2024-01-02", [false, true, false], 1),
            (
                "2024-01-01T02:00:00+02:00",
                "2024-01-01T00:00:00Z",
                [false, false, true],
                0,
            ),
        ];
        for (a, b, [before, after, equal], cmp) in cases {
            let ran = run_node(
                "DateTimeCompareNode",
                json!({"datetime_1": a, "datetime_2": b}),
                json!({}),
            );
            assert!(ran.outcome.success(), "{}", ran.error());
            assert_eq!(ran.out("n", "is_before"), Value::Bool(before), "{a} {b}");
            assert_eq!(ran.out("n", "is_after"), Value::Bool(after), "{a} {b}");
            assert_eq!(ran.out("n", "is_equal"), Value::Bool(equal), "{a} {b}");
            assert_eq!(ran.out("n", "comparison"), Value::Int(cmp), "{a} {b}");
        }
        assert_eq!(
            err(
                "DateTimeCompareNode",
                json!({"datetime_1": "2024-01-01", "datetime_2": "2024-01-01T00:00:00Z"})
            ),
            "n (DateTimeCompareNode): can't compare offset-naive and offset-aware datetimes"
        );
        let e = crate::engine::load_str(&chain(&[(
            "c",
            "DateTimeCompareNode",
            json!({"datetime_1": "2024-01-01"}),
        )]))
        .unwrap_err();
        assert!(
            e.to_string().contains("required input \"datetime_2\""),
            "{e}"
        );
    }

    #[test]
    fn get_timestamp() {
        let now = Utc::now().timestamp_micros() as f64 / 1e6;
        let Value::Float(s) = out("GetTimestampNode", json!({}), "timestamp") else {
            panic!("not a float")
        };
        assert!((s - now).abs() < 60.0, "{s} vs {now}");
        let Value::Float(ms) = out(
            "GetTimestampNode",
            json!({"milliseconds": true}),
            "timestamp",
        ) else {
            panic!("not a float")
        };
        assert!((ms / 1000.0 - now).abs() < 60.0, "{ms} vs {now}");
    }

    #[test]
    fn batch_2_3_datetime_part() {
        let ran = run_chain(&[
            ("get_timestamp", "GetTimestampNode", json!({})),
            ("get_datetime", "GetCurrentDateTimeNode", json!({})),
            (
                "datetime_add",
                "DateTimeAddNode",
                json!({"datetime": "{{get_datetime.datetime}}", "days": 1}),
            ),
            (
                "set_past_date",
                "SetVariableNode",
                json!({"variable_name": "past_date", "value": "2024-01-01T00:00:00"}),
            ),
            (
                "datetime_diff",
                "DateTimeDiffNode",
                json!({"datetime_1": "{{past_date}}", "datetime_2": "{{get_datetime.datetime}}"}),
            ),
        ]);
        assert!(ran.outcome.success(), "{}", ran.error());
        let now = parse_iso(&ran.out("get_datetime", "datetime").py_str()).unwrap();
        let plus = parse_iso(&ran.out("datetime_add", "result").py_str()).unwrap();
        assert_eq!(plus.sub(&now).ok(), Some(86_400 * US));
        let Value::Float(days) = ran.out("datetime_diff", "total_days") else {
            panic!("total_days is not a float")
        };
        let want =
            now.sub(&Dt::Naive(naive("2024-01-01 00:00:00"))).unwrap() as f64 / 1e6 / 86400.0;
        assert_eq!(days, want);
        assert!(days > 365.0);
    }
}
