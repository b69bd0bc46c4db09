//! Event ids, the one format every backend hands out and every reader compares: decimal
//! integers (SQLite, memory) or Redis stream ids (`MILLIS-SEQ`).

use super::{Result, StorageError};

/// The order of two event ids, when both have a known form: decimal integers (SQLite, memory)
/// or Redis stream ids (`MILLIS-SEQ`). None when either is something else.
pub fn compare_event_ids(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    Some(event_position(a)?.cmp(&event_position(b)?))
}

/// An event id as (ms, seq): `ms-seq` (a Redis stream id), or a bare integer `n` read as
/// `(n, 0)` (SQLite, memory). None for anything else. The one parser of event ids.
pub fn event_position(id: &str) -> Option<(u64, u64)> {
    let id = id.trim();
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// An event id of a backend that numbers its events (SQLite, memory): `n`, or `n-0` as a
/// stream id of the same position. A negative number reads as before the first event.
pub(crate) fn parse_numbered_event_id(id: &str) -> Result<i64> {
    let t = id.trim();
    if let Some(digits) = t.strip_prefix('-')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Ok(0);
    }
    match parse_event_position(t)? {
        (n, 0) => i64::try_from(n).map_err(|_| invalid_event_id(id)),
        _ => Err(invalid_event_id(id)),
    }
}

/// `event_position`, or the error a client gets for an id no storage hands out.
pub(crate) fn parse_event_position(id: &str) -> Result<(u64, u64)> {
    event_position(id).ok_or_else(|| invalid_event_id(id))
}

pub(crate) fn invalid_event_id(id: &str) -> StorageError {
    StorageError::InvalidInput(format!(
        "invalid event id `{}`: resume from an id this storage handed out",
        id.escape_debug()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_ids_read_integers_and_their_stream_form() {
        assert_eq!(parse_numbered_event_id(" 42 ").unwrap(), 42);
        assert_eq!(parse_numbered_event_id("42-0").unwrap(), 42);
        assert_eq!(parse_numbered_event_id(&i64::MIN.to_string()).unwrap(), 0);
        assert_eq!(
            parse_numbered_event_id(&i64::MAX.to_string()).unwrap(),
            i64::MAX
        );
        assert!(parse_numbered_event_id("42-1").is_err());
        assert!(parse_numbered_event_id(&u64::MAX.to_string()).is_err());
        assert!(parse_numbered_event_id("nope").is_err());
        assert!(parse_numbered_event_id("-").is_err());
    }

    #[test]
    fn event_ids_compare_as_numbers_or_stream_ids() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_event_ids("9", "10"), Some(Less));
        assert_eq!(compare_event_ids("1700-2", "1700-10"), Some(Less));
        assert_eq!(compare_event_ids("1701-0", "1700-10"), Some(Greater));
        assert_eq!(compare_event_ids("x", "1"), None);
        assert_eq!(event_position(" 5 "), Some((5, 0)));
        assert_eq!(event_position("1-2-3"), None);
        assert_eq!(event_position("-1"), None);
    }
}
