//! `redis://` storage (also `rediss://` over TLS, `redis+sentinel://`, `redis+cluster://`):
//! the `Storage` trait on Redis, for several daemons sharing one queue.
//!
//! - Every state change is one Lua script (`lua/`, loaded once; redis-rs reloads on
//!   NOSCRIPT), so it is atomic and writes its event in the same step.
//! - Every key is `{prefix}:...` (default prefix `spool`): one Cluster hash tag, so every
//!   script touches one slot (keys.rs says why one tag; lua/lib.lua lists the layout). We
//!   never use KEYS or touch a key outside the prefix, so other data in the same db is safe.
//! - Time is Redis's own clock (`TIME` inside scripts) plus the `Clock`'s skew (zero in
//!   production), so hosts with drifting clocks agree on leases. With the URL option
//!   `clock=local` scripts take the daemon's Clock as given instead: the conformance suite
//!   needs that, since its ManualClock stands still while Redis's clock runs (config.rs).
//! - Idle workers block on a pub/sub wake-up (wake.rs), not on polling.
//!
//! This file holds the store and the helpers every call uses; ops.rs maps the trait onto the
//! scripts; conn.rs (connections), config.rs (URLs), codec.rs (stored format), wake.rs
//! (wake-ups) and health.rs (server checks) hold the rest.

mod codec;
mod config;
mod conn;
mod health;
mod keys;
mod ops;
mod scripts;
mod wake;

use super::{Claimed, Result, Storage, StorageError, StorageOptions};
use crate::job::{self, Clock, LeaseToken};
use config::{ClockSource, RedisConfig};
use conn::Conn;
use keys::Keys;
use redis::{ErrorKind, RedisError, Script, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wake::{Listener, WorkSignal};

/// Jobs per script call in maintenance loops: small enough that one call never blocks Redis
/// for long (each job is a dozen commands), large enough to keep round trips few.
const BATCH: usize = 500;
/// At most this many jobs per `import_jobs` script call.
const IMPORT_BATCH: usize = 200;
/// `sweep_retention` deletes at most this many jobs per call; the sweeper comes back.
const SWEEP_BUDGET: u64 = 20_000;
/// `claim` leases at most this many jobs per call.
const MAX_CLAIM: usize = 10_000;
/// Oldest Redis we run on: scripts use multi-field HSET and streams (5.0) and rely on
/// script effects replication, the default since 5.0.
const MIN_REDIS_MAJOR: u32 = 5;

/// Opens a Redis storage from a URL (see config.rs for the forms and options).
pub async fn open(
    url: &str,
    opts: StorageOptions,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(RedisStorage::connect(url, opts, clock).await?))
}

/// rustls needs a process-wide crypto provider and redis-rs builds its TLS config from the
/// default one: install ring's, once; if the process already has one, that one stays.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one in between: fine, it is used.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

pub struct RedisStorage {
    conn: Conn,
    keys: Keys,
    cfg: RedisConfig,
    /// The URL without its password, for messages.
    url: String,
    opts: StorageOptions,
    clock: Arc<dyn Clock>,
    /// Text around the attempt number of job::lease_expired_error, for lua/reap.lua.
    lease_error: (String, String),
    /// HSCAN cursor of `purge_local_cache`, kept between sweeps.
    cache_cursor: AtomicU64,
    /// The legacy per-state indexes were removed (drop_legacy_indexes_once).
    legacy_dropped: std::sync::atomic::AtomicBool,
    signal: Arc<WorkSignal>,
    /// This process wrote events (a job script ran); `wait_for_events` listens.
    events: crate::storage::Signal,
    _listener: Listener,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RedisStorage {
    pub async fn connect(url: &str, opts: StorageOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let cfg = config::parse(url)?;
        let shown = crate::storage::redact_url(url);
        if cfg.tls() {
            install_crypto_provider();
        }
        let conn = Conn::connect(&cfg).await.map_err(|e| {
            // A TLS file that cannot be read is a configuration error, not an outage: the
            // fallback spool must not wait for it to "come back".
            if e.kind() == ErrorKind::InvalidClientConfig {
                return StorageError::InvalidInput(format!(
                    "redis storage `{shown}` is misconfigured: {e}; fix the url's options"
                ));
            }
            let hint = if cfg.tls() {
                "check that it is running, reachable and serving TLS on that port, that its \
                 certificate chains to a system root or the `ca=` file and names the url's host, \
                 and that the credentials are right"
            } else {
                "check that it is running, reachable and that the credentials are right"
            };
            StorageError::Unavailable(format!("cannot connect to redis at `{shown}`: {e}; {hint}"))
        })?;
        let keys = Keys::new(&cfg.prefix);
        let mark = u32::MAX.to_string();
        let sample = job::lease_expired_error(u32::MAX);
        let (before, after) = sample.split_once(&mark).unwrap_or((&sample, ""));
        let lease_error = (before.to_owned(), after.to_owned());
        let signal = Arc::new(WorkSignal::default());
        let listener = Listener::start(cfg.clone(), keys.wake_channel(), signal.clone());
        let storage = RedisStorage {
            conn,
            keys,
            cfg,
            url: shown,
            opts,
            clock,
            lease_error,
            cache_cursor: AtomicU64::new(0),
            legacy_dropped: std::sync::atomic::AtomicBool::new(false),
            signal,
            events: Default::default(),
            _listener: listener,
        };
        storage.check_server().await?;
        Ok(storage)
    }

    /// Indexes earlier versions wrote and this one never reads: the id index of every job
    /// (`{prefix}:jobs`), one id index per state over all types (`{prefix}:jobs:s:<state>`),
    /// the id index of running jobs per type
    /// (`{prefix}:jobs:st:running:<type>`) and the by-finished_at index of finished jobs
    /// (`{prefix}:finished:<state>:<type>`); lua/lib.lua says what replaced them. The first
    /// retention sweep of a daemon unlinks them (UNLINK frees them off Redis's main thread).
    /// It is done there, not at connect, so that `spool migrate` (even `--dry-run`) and
    /// read-only replicas never see a write; a failure is only logged. The all-types running
    /// set of earlier versions (`{prefix}:running`) is not among them: it may still hold the
    /// leases of jobs an earlier version claimed, and the reaper drains it (lua/reap.lua).
    async fn drop_legacy_indexes_once(&self) {
        if self.legacy_dropped.swap(true, Ordering::Relaxed) {
            return;
        }
        match self.unlink_legacy_indexes().await {
            Ok(n) if n > 0 => tracing::info!(keys = n, "removed the indexes of an earlier version"),
            Ok(_) => {}
            Err(e) => {
                self.legacy_dropped.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot remove the indexes of an earlier version; retrying at the next sweep");
            }
        }
    }

    async fn unlink_legacy_indexes(&self) -> Result<i64> {
        let tag = self.keys.tag();
        let types: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.types()))
            .await?;
        let mut names: Vec<String> = crate::job::JobState::ALL
            .iter()
            .map(|s| format!("{tag}:jobs:s:{}", keys::state_name(*s)))
            .collect();
        names.push(self.keys.all_jobs());
        for t in &types {
            names.push(format!("{tag}:jobs:st:running:{t}"));
            for s in ["completed", "failed", "cancelled"] {
                names.push(format!("{tag}:finished:{s}:{t}"));
            }
        }
        let mut unlinked = 0;
        for chunk in names.chunks(256) {
            unlinked += self.query::<i64>(redis::cmd("UNLINK").arg(chunk)).await?;
        }
        Ok(unlinked)
    }

    /// A cache script's error: the quota (`SPOOLQUOTA <entries> <bytes>`), an increment of a
    /// value that is no integer or that overflows, or whatever `err` makes of it.
    fn cache_error(&self, ns: &str, key: &str, e: RedisError) -> StorageError {
        let text = e.to_string();
        // redis-rs shows the reply as `SPOOLQUOTA: <entries> <bytes>`.
        if let Some(rest) = text.split("SPOOLQUOTA").nth(1) {
            let mut n = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<u64>().unwrap_or(0));
            let after = crate::storage::CacheUsage {
                entries: n.next().unwrap_or(0),
                bytes: n.next().unwrap_or(0),
            };
            return crate::storage::limits::cache_full(ns, after, self.opts.cache_quota);
        }
        if text.contains("overflow") {
            return crate::storage::limits::increment_overflow(ns, key);
        }
        if text.contains("not an integer") {
            return crate::storage::limits::not_an_integer(ns, key);
        }
        self.err(e)
    }

    fn err(&self, e: RedisError) -> StorageError {
        let url = &self.url;
        if e.code() == Some("OOM") {
            return StorageError::Unavailable(format!(
                "redis at `{url}` is out of memory and refuses writes ({e}); raise maxmemory or \
                 shorten job retention"
            ));
        }
        if matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
            || e.kind() == ErrorKind::AuthenticationFailed
        {
            return StorageError::Unavailable(format!(
                "redis at `{url}` refused us ({e}); check the user and password in the storage url \
                 and the user's ACL"
            ));
        }
        let unavailable = e.is_io_error()
            || e.is_timeout()
            || conn::means_master_lost(&e)
            || matches!(
                e.kind(),
                ErrorKind::ClusterDown
                    | ErrorKind::TryAgain
                    | ErrorKind::ClusterConnectionNotFound
                    | ErrorKind::MasterNameNotFoundBySentinel
            );
        if unavailable {
            StorageError::Unavailable(format!(
                "redis at `{url}`: {e}; check that it is running and reachable"
            ))
        } else {
            StorageError::Internal(format!("redis at `{url}`: {e}"))
        }
    }

    /// A job script's invocation with the common arguments (lua/lib.lua's convention).
    fn job_script<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(self.keys.all_jobs())
            .arg(self.keys.tag())
            .arg(self.time_arg())
            .arg(self.opts.max_events.max(1));
        inv
    }

    /// The time source argument every script takes (lua/lib.lua, ARGV[2]).
    fn time_arg(&self) -> String {
        match self.cfg.clock {
            ClockSource::Redis => self.clock.skew_ms().to_string(),
            ClockSource::Local => format!("={}", self.clock.now_ms()),
        }
    }

    /// A script that changes jobs (and so writes their events).
    async fn run(&self, inv: &redis::ScriptInvocation<'_>) -> Result<Value> {
        let out = self.read(inv).await;
        if out.is_ok() {
            self.events.notify();
        }
        out
    }

    /// A script that writes no event: a read, or a plugin cache operation.
    async fn read(&self, inv: &redis::ScriptInvocation<'_>) -> Result<Value> {
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(|e| self.err(e))
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    async fn query_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    /// A cache script's invocation, as lua/cache_lib.lua takes it: the entry, the expiry
    /// hash, the namespace's sizes and bytes; the time source, the key's length and the quota.
    fn cache_script<'a>(
        &self,
        script: &'a Script,
        ns: &str,
        key: &str,
    ) -> redis::ScriptInvocation<'a> {
        let quota = self.opts.cache_quota;
        let mut inv = script.prepare_invoke();
        inv.key(self.keys.cache(ns, key))
            .key(self.keys.cache_expiry())
            .key(self.keys.cache_sizes(ns))
            .key(self.keys.cache_bytes(ns))
            .arg(self.time_arg())
            .arg(key.len())
            .arg(quota.max_entries)
            .arg(quota.max_bytes);
        inv
    }

    /// With clock=local, drops expired cache entries the expiry hash knows about, a bounded
    /// HSCAN page per sweep (the cursor carries over between sweeps).
    async fn purge_local_cache(&self) -> Result<()> {
        if self.cfg.clock != ClockSource::Local {
            return Ok(());
        }
        let cursor = self.cache_cursor.load(Ordering::Relaxed);
        let mut cmd = redis::cmd("HSCAN");
        cmd.arg(self.keys.cache_expiry())
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH);
        let (next, flat): (u64, Vec<String>) = self.query(&cmd).await?;
        self.cache_cursor.store(next, Ordering::Relaxed);
        let fields: Vec<&String> = flat.iter().step_by(2).collect();
        if !fields.is_empty() {
            let mut inv = scripts::CACHE_PURGE.prepare_invoke();
            inv.key(self.keys.cache_expiry())
                .arg(self.time_arg())
                .arg(fields);
            self.read(&inv).await?;
        }
        Ok(())
    }

    /// Runs a maintenance script in batches until a batch comes back short; `step` returns
    /// (what to add to the total, whether the batch was full).
    async fn run_batches(
        &self,
        script: &Script,
        extra: &[String],
        budget: u64,
        mut step: impl FnMut(Value) -> Result<(u64, bool)>,
    ) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let mut inv = self.job_script(script);
            inv.arg(BATCH);
            for a in extra {
                inv.arg(a);
            }
            let (n, full) = step(self.run(&inv).await?)?;
            total += n;
            if !full || total >= budget {
                return Ok(total);
            }
        }
    }

    /// A claimed job from its `HGETALL`; `None` when the hash is gone.
    fn claimed_from(&self, v: Value) -> Result<Option<Claimed>> {
        let Some(mut fields) = codec::fields_from_value(v)? else {
            return Ok(None);
        };
        let lease = fields.take("lease").unwrap_or_default();
        Ok(Some(Claimed {
            job: codec::job_from_fields(fields)?,
            lease: LeaseToken(lease),
        }))
    }
}
