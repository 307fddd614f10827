//! Wall-clock helpers: milliseconds since the epoch inside, RFC 3339 UTC with milliseconds at the
//! JSON boundary (so dates sort as text).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2026-11-23T16:31:20.123Z` for a millisecond timestamp.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t = t.replace_nanosecond((ms.rem_euclid(1000) as u32) * 1_000_000).unwrap_or(t);
    // Rfc3339 prints as many fraction digits as needed; pin exactly three so strings sort.
    let base = t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_default();
    let stem = base.trim_end_matches('Z');
    format!("{stem}.{:03}Z", ms.rem_euclid(1000))
}

/// `2026-11-23 16:31:20 UTC` for pages.
pub fn display_ms(ms: i64) -> String {
    PageTime(ms).to_string()
}

/// A millisecond timestamp as pages show it (`2026-11-23 16:31:20 UTC`), written straight into
/// whatever formats it (a page of rows writes dozens).
#[derive(Debug, Clone, Copy)]
pub struct PageTime(pub i64);

impl std::fmt::Display for PageTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = OffsetDateTime::from_unix_timestamp(self.0.div_euclid(1000))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_has_exactly_three_fraction_digits() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(1_700_000_000_100), "2023-11-14T22:13:20.100Z");
    }

    #[test]
    fn pages_show_seconds_in_utc() {
        assert_eq!(display_ms(1_700_000_000_999), "2023-11-14 22:13:20 UTC");
        assert_eq!(display_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(display_ms(-1), "1969-12-31 23:59:59 UTC");
    }
}
