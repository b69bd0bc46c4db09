//! Durations and sizes as people write them in config files, manifests and flags (`30s`,
//! `5m`, `64MiB`), and durations as the daemon prints them.

use std::time::Duration;

/// Parse a duration such as `30s`, `5m`, `24h`, `7d`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("it is empty".into());
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Err("it has no unit; write for example 30s, 5m or 24h".into());
    }
    humantime::parse_duration(t).map_err(|e| e.to_string())
}

/// Parse a size: `1048576`, `512KB`, `1MiB`, `2 GB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err("it does not start with a number".into());
    }
    let n: u64 = num
        .parse()
        .map_err(|_| "the number is too large".to_string())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| "the size is too large".to_string())
}

/// A duration as the daemon prints it: `1m 30s`.
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
