//! Wall-clock time in the one textual form Perch stores and sends.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339 in UTC with microseconds: `2026-11-25T08:45:18.123456Z`.
///
/// Fixed width, so stored timestamps sort as text.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

pub fn format(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// Parses RFC 3339, or a bare date (`2016-01-31`, taken as the end of that day in UTC when
/// `end_of_day` is set, its start otherwise).
pub fn parse(text: &str, end_of_day: bool) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    let time = if end_of_day {
        time::Time::from_hms_micro(23, 59, 59, 999_999).ok()?
    } else {
        time::Time::MIDNIGHT
    };
    Some(date.with_time(time).assume_utc())
}

pub fn unix_seconds() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Unix seconds in the stored form.
pub fn format_unix(seconds: i64) -> String {
    format(OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}
