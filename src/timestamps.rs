//! Timestamps as the API and the operator commands print them.

/// Milliseconds since the epoch as RFC 3339 (UTC, millisecond precision).
pub fn iso_time(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// This host's clock, milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn utc_date_today() -> String {
    utc_date(time::OffsetDateTime::now_utc().date())
}

/// A date as `YYYY-MM-DD`.
pub fn utc_date(day: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}
