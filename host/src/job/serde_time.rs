//! Serde form of `Millis`: RFC 3339 in UTC with milliseconds (`2026-08-01T12:00:00.123Z`) on
//! the way out; RFC 3339 (any offset) or integer milliseconds on the way in. Use with
//! `#[serde(with = "serde_time")]`, or `serde_time::option` for `Option<Millis>`.

use super::{JobError, Millis};
use serde::{Deserialize, Deserializer, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `Millis` as RFC 3339 UTC with exactly three fraction digits. Times outside years
/// 0000-9999 (never produced by a real clock) fall back to the integer as text.
pub fn format_rfc3339(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) if (0..=9999).contains(&t.year()) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        _ => ms.to_string(),
    }
}

/// An RFC 3339 time (any offset; fractions below a millisecond are dropped) or an integer
/// count of milliseconds since 1970.
pub fn parse_time(text: &str) -> Result<Millis, JobError> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<Millis>() {
        return Ok(ms);
    }
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| JobError::InvalidTime(text.to_owned()))?;
    Millis::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000))
        .map_err(|_| JobError::InvalidTime(text.to_owned()))
}

pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ms))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
    match TimeRepr::deserialize(d)? {
        TimeRepr::Int(ms) => Ok(ms),
        TimeRepr::Text(text) => parse_time(&text).map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TimeRepr {
    Int(Millis),
    Text(String),
}

/// The same for `Option<Millis>` (`null` when absent).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_some(&format_rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        match Option::<TimeRepr>::deserialize(d)? {
            None => Ok(None),
            Some(TimeRepr::Int(ms)) => Ok(Some(ms)),
            Some(TimeRepr::Text(text)) => parse_time(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}
