//! Ceilometer's timestamps as numbers: `timestamp` is ISO 8601, naive (UTC, as
//! the polling agent writes it: `2025-06-01T12:00:00.123456`) or with an offset
//! (notifications: `2025-06-01T12:00:00.123456+00:00`). Parsed with chrono.

/// Nanoseconds since the Unix epoch, or `None` when `ts` is not ISO 8601 (a
/// space instead of the `T` is accepted too, as Python's `str(datetime)` writes).
pub fn unix_nanos(ts: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) {
        return t.timestamp_nanos_opt();
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(ts, f) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilometer_timestamps_are_nanoseconds_since_the_epoch() {
        assert_eq!(unix_nanos("1970-01-01T00:00:01"), Some(1_000_000_000));
        assert_eq!(
            unix_nanos("2025-06-01T12:00:00.123456"),
            Some(1_748_779_200_123_456_000)
        );
        assert_eq!(
            unix_nanos("2025-06-01T12:00:00.123456+00:00"),
            Some(1_748_779_200_123_456_000)
        );
        assert_eq!(
            unix_nanos("2025-06-01 14:00:00+02:00"),
            Some(1_748_779_200_000_000_000)
        );
        assert_eq!(
            unix_nanos("2025-06-01T14:00:00+02:00"),
            Some(1_748_779_200_000_000_000)
        );
        assert_eq!(unix_nanos("yesterday"), None);
    }
}
