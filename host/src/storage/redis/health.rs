//! Server checks: at startup (version, eviction policy, role) and for `info`.

use super::{MIN_REDIS_MAJOR, RedisStorage};
use crate::storage::{Result, StorageError};
use std::collections::HashMap;

impl RedisStorage {
    /// Refuses servers too old for the scripts; warns about an eviction policy that can
    /// silently drop jobs.
    pub(super) async fn check_server(&self) -> Result<()> {
        let info = self.server_info().await?;
        let version = info.get("redis_version").cloned().unwrap_or_default();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < MIN_REDIS_MAJOR {
            // Not an outage (waiting will not fix it): the fallback must not spool for it.
            return Err(StorageError::InvalidInput(format!(
                "redis at `{}` is version {version}; spool needs redis {MIN_REDIS_MAJOR}.0 or later",
                self.url
            )));
        }
        for w in server_warnings(&info) {
            tracing::warn!(url = %self.url, "{w}");
        }
        Ok(())
    }

    pub(super) async fn server_info(&self) -> Result<HashMap<String, String>> {
        let text = self
            .conn
            .info(self.keys.slot())
            .await
            .map_err(|e| self.err(e))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect())
    }
}

/// Problems an operator should see in `info` and at startup.
pub(super) fn server_warnings(info: &HashMap<String, String>) -> Vec<String> {
    let mut w = Vec::new();
    match info.get("maxmemory_policy").map(String::as_str) {
        Some("noeviction") | None => {}
        Some(policy) => w.push(format!(
            "redis maxmemory-policy is `{policy}`: under memory pressure redis will evict keys \
             and silently lose jobs; set `maxmemory-policy noeviction`"
        )),
    }
    if info.get("role").is_some_and(|r| r != "master") {
        w.push("connected to a redis replica: writes will fail; point spool at the master".into());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evicting_policy_and_a_replica_are_warned_about() {
        let info: HashMap<String, String> =
            [("maxmemory_policy", "allkeys-lru"), ("role", "slave")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let w = server_warnings(&info);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("noeviction"));
        let ok: HashMap<String, String> = [
            ("maxmemory_policy".to_owned(), "noeviction".to_owned()),
            ("role".to_owned(), "master".to_owned()),
        ]
        .into();
        assert!(server_warnings(&ok).is_empty());
    }
}
