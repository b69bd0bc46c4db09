//! Key names. Every key Spool touches is `{prefix}:...`: the braces make `{prefix}` the Redis
//! Cluster hash tag, so all of one Spool's keys live in one slot.
//!
//! Why one tag for everything rather than one per job type: a claim picks the best job across
//! several types, unique keys span types, and the delayed/running/events structures are
//! shared, and each of those must be one atomic script, which Cluster allows only within one
//! slot. BullMQ makes the same trade per queue (`{bull:queue}`). The price is that one Spool
//! does not spread its load over several Cluster shards; run several prefixes for that. The
//! Lua side builds the same names (lua/lib.lua lists the layout); keep the two in step.

use crate::job::JobState;

/// The names of one Spool's keys, for a prefix such as `spool`.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `{prefix}`, the hash tag and the start of every key.
    tag: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            tag: format!("{{{prefix}}}"),
        }
    }

    /// `{prefix}`: scripts receive it as ARGV[1] and build their key names from it.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The key job scripts declare as KEYS[1], for routing to our slot. Earlier versions kept
    /// an index of every job id under this name; nothing writes it now (lua/lib.lua).
    pub fn all_jobs(&self) -> String {
        format!("{}:jobs", self.tag)
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.tag)
    }

    pub fn types(&self) -> String {
        format!("{}:types", self.tag)
    }

    /// With `clock=local`: cache entry key -> expiry in the daemon's clock (lua/cache_get.lua).
    pub fn cache_expiry(&self) -> String {
        format!("{}:cache-expiry", self.tag)
    }

    /// Hash type -> JSON of its flow control (lua/ctl.lua writes it with `ctl:<type>`).
    pub fn controls(&self) -> String {
        format!("{}:ctl", self.tag)
    }

    /// Hash name -> JSON of a cron schedule, and its two companions (lua/schedule.lua).
    pub fn schedules(&self) -> [String; 3] {
        [
            format!("{}:schedules", self.tag),
            format!("{}:schedules:tick", self.tag),
            format!("{}:schedules:created", self.tag),
        ]
    }

    pub fn events(&self) -> String {
        format!("{}:events", self.tag)
    }

    /// The pub/sub channel scripts publish on when work becomes ready. A channel, not a key:
    /// classic PUBLISH reaches subscribers on every node of a Cluster and on replicas.
    pub fn wake_channel(&self) -> String {
        format!("{}:wake", self.tag)
    }

    /// The id index `list` reads for a filter (see lua/list.lua).
    pub fn list_index(&self, status: Option<JobState>, job_type: Option<&str>) -> String {
        match (status, job_type) {
            // No index over all types: list.lua merges the per-type ones.
            (_, None) => String::new(),
            // Nor an id index of running jobs: list.lua sorts their sets.
            (Some(JobState::Running), Some(_)) => String::new(),
            (None, Some(t)) => format!("{}:jobs:t:{t}", self.tag),
            (Some(s), Some(t)) => format!("{}:jobs:st:{}:{t}", self.tag, state_name(s)),
        }
    }

    /// A plugin's cache entry: `{prefix}:cache:<ns>:<key>`. `:` and `%` in the namespace are
    /// percent-escaped so that (`a:b`, `c`) and (`a`, `b:c`) stay two entries; the key, last,
    /// needs no escaping.
    pub fn cache(&self, ns: &str, key: &str) -> String {
        format!("{}:cache:{}:{key}", self.tag, escape_ns(ns))
    }

    /// Hash entry key -> bytes of its key and value, for one namespace's quota.
    pub fn cache_sizes(&self, ns: &str) -> String {
        format!("{}:cache-sizes:{}", self.tag, escape_ns(ns))
    }

    /// The sum of `cache_sizes(ns)`.
    pub fn cache_bytes(&self, ns: &str) -> String {
        format!("{}:cache-bytes:{}", self.tag, escape_ns(ns))
    }

    /// The Cluster slot of every key above.
    pub fn slot(&self) -> u16 {
        let inner = &self.tag[1..self.tag.len() - 1];
        // An empty tag (`{}`) does not count as a tag: Redis hashes the whole key then.
        if inner.is_empty() {
            crc16_xmodem(self.all_jobs().as_bytes()) % 16384
        } else {
            crc16_xmodem(inner.as_bytes()) % 16384
        }
    }
}

/// A cache namespace in a key: `%` and `:` percent-escaped, so that (`a:b`, `c`) and
/// (`a`, `b:c`) stay two entries.
fn escape_ns(ns: &str) -> String {
    ns.replace('%', "%25").replace(':', "%3A")
}

/// The state's name as stored (the same as its serde name).
pub fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Scheduled => "scheduled",
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Retrying => "retrying",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// Redis Cluster's key hash (CRC16/XMODEM), used to route commands without keys (INFO) to
/// the node that holds our slot.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_starts_with_the_hash_tag() {
        let k = Keys::new("spool");
        assert_eq!(k.job("abc"), "{spool}:job:abc");
        assert_eq!(k.all_jobs(), "{spool}:jobs");
        assert_eq!(
            k.list_index(Some(JobState::Failed), Some("a:b")),
            "{spool}:jobs:st:failed:a:b"
        );
        assert_eq!(k.cache("img", "x:y"), "{spool}:cache:img:x:y");
    }

    #[test]
    fn cache_namespaces_with_colons_do_not_collide() {
        let k = Keys::new("spool");
        assert_ne!(k.cache("a:b", "c"), k.cache("a", "b:c"));
    }

    #[test]
    fn slot_matches_redis_cluster_keyslot() {
        // Values from `redis-cli CLUSTER KEYSLOT`.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(Keys::new("foo").slot(), 12182);
        assert_eq!(Keys::new("spool").slot(), crc16_xmodem(b"spool") % 16384);
    }
}
