//! Per-entry modification times as one `u64` ("stamp"), the value WAL ops,
//! memtable entries and segment entries carry in their `mtime_ms` field.
//!
//! Two encodings share the field, told apart by the top bit:
//!
//! - bit 63 clear: milliseconds since the Unix epoch. Every entry written
//!   before per-document times existed, and every write that gives no time
//!   of its own (it takes its WAL group's millisecond time).
//! - bit 63 set: the low 63 bits are nanoseconds since the epoch, for a time
//!   set through the filesystem (`utimensat`, `cp -p`, `rsync -a`, `tar x`).
//!   Tools compare times to the nanosecond (rsync's quick check does), so a
//!   time must come back exactly as it was set to make a second `rsync -a`
//!   a no-op. 63 bits of nanoseconds reach the year 2262.
//!
//! A millisecond stamp never has bit 63 set (that would be the year 292
//! million), so old objects decode unchanged. Times before the epoch are
//! stored as the epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS: u64 = 1 << 63;

/// The stamp of a millisecond time.
pub fn from_ms(ms: u64) -> u64 {
    ms & !NANOS
}

/// The stamp of `t`, exact to the nanosecond.
pub fn from_time(t: SystemTime) -> u64 {
    let ns = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(!NANOS)) as u64);
    ns | NANOS
}

/// Nanoseconds since the epoch of a stamp.
pub fn to_ns(stamp: u64) -> u64 {
    if stamp & NANOS != 0 {
        stamp & !NANOS
    } else {
        stamp.saturating_mul(1_000_000)
    }
}

/// The time a stamp stands for.
pub fn to_time(stamp: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(to_ns(stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_decode_and_nanoseconds_are_exact() {
        assert_eq!(to_ns(from_ms(1_700_000_000_123)), 1_700_000_000_123_000_000);
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(to_time(from_time(t)), t);
        assert_eq!(to_time(from_time(UNIX_EPOCH)), UNIX_EPOCH);
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(to_time(from_time(before)), UNIX_EPOCH);
    }
}
