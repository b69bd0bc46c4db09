//! `GET /health` (200 healthy or degraded, 503 unhealthy or stopping) and `GET /metrics`
//! (Prometheus text). Neither needs the API token: probes and scrapers live outside `/api`.

use super::ApiState;
use crate::job::JobState;
use crate::metrics::Snapshot;
use crate::storage::flow::TypeControl;
use crate::storage::{BackendInfo, CacheUsage, Stats, Storage, StorageError};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A ping slower than this counts as unreachable for this probe (well inside the usual 1-2 s
/// timeouts of load balancer and Kubernetes probes, which must get an answer).
const PING_TIMEOUT: Duration = Duration::from_millis(900);
/// `info()` and `stats()` slower than this are left out of the answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A ping slower than this makes it `degraded`.
const SLOW_PING: Duration = Duration::from_millis(500);
/// `info()` and `stats()` answers are reused for this long (stats can take 0.1-0.2 s on a
/// large SQLite file); the ping is never cached, so an outage shows at the next probe.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// What `info()` and `stats()` answered (None: they failed or timed out), and the first error
/// that is not "unreachable" (a corrupt file, say: `SELECT 1` pings do not read the data).
#[derive(Clone, Default)]
struct Probe {
    info: Option<BackendInfo>,
    stats: Option<Stats>,
    /// Flow control per type (paused types, limits).
    controls: Option<BTreeMap<String, TypeControl>>,
    /// What each loaded plugin's cache holds (plugins whose figure failed are left out).
    caches: BTreeMap<String, CacheUsage>,
    broken: Option<String>,
}

/// The value of a timed storage call; an error other than "unreachable" goes to `broken`.
fn kept<T, E>(r: Result<crate::storage::Result<T>, E>, broken: &mut Option<String>) -> Option<T> {
    match r {
        Ok(Ok(v)) => Some(v),
        Ok(Err(StorageError::Unavailable(_))) | Err(_) => None,
        Ok(Err(e)) => {
            broken.get_or_insert_with(|| e.to_string());
            None
        }
    }
}

/// Recent `info()`/`stats()` answers shared by `/health` and `/metrics`.
#[derive(Default)]
pub struct ProbeCache {
    slot: tokio::sync::Mutex<Option<(Instant, Probe)>>,
}

impl ProbeCache {
    /// The recent answers, or new ones (`plugins`: the loaded plugins, whose caches are read).
    async fn get(&self, storage: &dyn Storage, plugins: Vec<String>) -> Probe {
        let mut slot = self.slot.lock().await;
        if let Some((at, probe)) = slot.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return probe.clone();
        }
        let caches = async {
            let mut caches = BTreeMap::new();
            for name in plugins {
                if let Ok(Ok(u)) =
                    tokio::time::timeout(PROBE_TIMEOUT, storage.cache_usage(&name)).await
                {
                    caches.insert(name, u);
                }
            }
            caches
        };
        let (info, stats, controls, caches) = tokio::join!(
            tokio::time::timeout(PROBE_TIMEOUT, storage.info()),
            tokio::time::timeout(PROBE_TIMEOUT, storage.stats()),
            tokio::time::timeout(PROBE_TIMEOUT, storage.type_controls()),
            caches
        );
        let mut broken = None;
        let info = kept(info, &mut broken);
        let stats = kept(stats, &mut broken);
        let controls = kept(controls, &mut broken);
        let probe = Probe {
            info,
            stats,
            controls,
            caches,
            broken,
        };
        *slot = Some((Instant::now(), probe.clone()));
        probe
    }
}

/// The Redis server facts `/health` shows, from `BackendInfo::details`.
const REDIS_DETAILS: [&str; 7] = [
    "version",
    "role",
    "used_memory",
    "used_memory_human",
    "maxmemory",
    "maxmemory_policy",
    "connected_clients",
];

pub async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let mut reasons: Vec<String> = Vec::new();
    let mut unhealthy = false;
    let ping = tokio::time::timeout(PING_TIMEOUT, state.storage.ping()).await;
    let reachable = matches!(ping, Ok(Ok(_)));
    let storage = match ping {
        Ok(Ok(latency)) => {
            state.metrics.storage_call("ping", latency);
            if latency > SLOW_PING {
                reasons.push(format!("storage ping took {} ms", latency.as_millis()));
            }
            json!({ "connected": true, "ok": true, "latency_ms": latency.as_secs_f64() * 1000.0 })
        }
        // Unreachable (Redis down, a network cut) is `degraded`: the daemon finishes what it
        // holds, retries its results and reconnects by itself, and restarting it would not
        // bring Redis back. Any other storage error needs a human: `unhealthy`.
        Ok(Err(StorageError::Unavailable(e))) => {
            reasons.push(format!(
                "storage unreachable: {e}; jobs held finish and their results wait, new \
                 enqueues {}",
                if state.storage.capabilities().shared {
                    "fail until it is back (set `fallback` to keep accepting them)"
                } else {
                    "fail until it is back"
                }
            ));
            json!({ "connected": false, "ok": false, "error": e })
        }
        Ok(Err(e)) => {
            unhealthy = true;
            reasons.push(format!("storage: {e}"));
            json!({ "connected": true, "ok": false, "error": e.to_string() })
        }
        Err(_) => {
            reasons.push(format!(
                "storage unreachable: no answer to a ping within {} ms (it may be down, \
                 restarting or overloaded); jobs held finish and their results wait",
                PING_TIMEOUT.as_millis()
            ));
            json!({ "connected": false, "ok": false, "error": "ping timed out" })
        }
    };
    // Storage that did not answer a ping will not answer these either: do not make the
    // probe wait for their timeouts.
    let Probe {
        info,
        stats,
        controls,
        caches,
        broken,
    } = if reachable {
        state
            .probe_cache
            .get(state.storage.as_ref(), state.catalog.loaded_names())
            .await
    } else {
        Probe::default()
    };
    if let Some(e) = broken {
        unhealthy = true;
        reasons.push(format!("storage answers pings but cannot be read: {e}"));
    }
    if let Some(info) = &info {
        reasons.extend(info.warnings.iter().cloned());
    }
    let detail = |k: &str| info.as_ref().and_then(|i| i.details.get(k)).cloned();
    let redis = state.storage.capabilities().shared.then(|| {
        let map: serde_json::Map<String, serde_json::Value> = REDIS_DETAILS
            .iter()
            .filter_map(|k| detail(k).map(|v| ((*k).to_string(), json!(v))))
            .collect();
        serde_json::Value::Object(map)
    });
    let fallback = info.as_ref().and_then(|i| i.fallback.as_ref()).map(|f| {
        json!({
            "active": f.active,
            "jobs": f.jobs,
            "since": f.since,
        })
    });
    let mut totals: BTreeMap<JobState, u64> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
    let mut stalled_types = Vec::new();
    if let Some(stats) = &stats {
        for (name, ts) in &stats.types {
            for (s, n) in &ts.counts {
                *totals.entry(*s).or_default() += n;
            }
            let pending = ts.counts.get(&JobState::Pending).copied().unwrap_or(0);
            // A paused, held or limited type's jobs may wait on purpose.
            let limited = controls.as_ref().is_some_and(|c| {
                c.get(name)
                    .is_some_and(|tc| tc.restricts(state.clock.now_ms()))
            });
            if pending > 0 && state.catalog.handles(name) && !limited {
                stalled_types.push(name.clone());
            }
        }
    }
    let since_claim = state.metrics.since_last_claim();
    let free_worker = state.metrics.busy_workers() < state.metrics.total_workers();
    let stalled = !unhealthy
        && !stalled_types.is_empty()
        && free_worker
        && since_claim >= state.api.stall_after;
    if stalled {
        reasons.push(format!(
            "connected but not consuming: {} pending for {} with no successful claim for {}s",
            "jobs are",
            stalled_types
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", "),
            since_claim.as_secs()
        ));
    }
    let quota = state.cache_quota;
    for (plugin, u) in &caches {
        if u.entries >= quota.max_entries || u.bytes >= quota.max_bytes {
            reasons.push(format!(
                "the cache of plugin `{plugin}` is full ({} entries, {} bytes; quota {} and {}): \
                 its cache writes fail until entries are deleted or expire",
                u.entries, u.bytes, quota.max_entries, quota.max_bytes
            ));
        }
    }
    let (loaded, failed) = state.catalog.counts();
    if failed > 0 {
        reasons.push(format!(
            "{failed} plugin file(s) failed to load: see GET /api/v1/plugins"
        ));
    }
    let stopping = *state.stop.borrow();
    let status = if stopping {
        "stopping"
    } else if unhealthy {
        "unhealthy"
    } else if reasons.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    let code = match status {
        "healthy" | "degraded" => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = json!({
        "status": status,
        "reasons": reasons,
        "backend": state.storage.backend(),
        "storage": storage,
        "redis": redis,
        "fallback": fallback,
        "storage_info": info,
        "queue": stats.as_ref().map(|_| json!(totals)),
        "plugins": { "loaded": loaded, "failed": failed },
        "plugin_cache": { "quota": quota, "usage": caches },
        "paused_types": controls.as_ref().map(|c| {
            c.iter().filter(|(_, tc)| tc.paused).map(|(t, _)| t.clone()).collect::<Vec<_>>()
        }),
        "workers": { "total": state.metrics.total_workers(), "busy": state.metrics.busy_workers() },
        "consuming": {
            "last_claim_age_s": since_claim.as_secs(),
            "stalled": stalled,
            "stalled_types": stalled_types.iter().filter(|_| stalled).collect::<Vec<_>>(),
        },
        "uptime_s": state.started.elapsed().as_secs(),
        "problems": reasons,
    });
    (code, Json(body)).into_response()
}

pub async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    // As in /health: storage that did not answer a ping will not answer `stats` either, so
    // the scrape does not wait for its timeout; the daemon's own counters still go out.
    let ping = tokio::time::timeout(PING_TIMEOUT, state.storage.ping()).await;
    let storage_up = if let Ok(Ok(latency)) = ping {
        state.metrics.storage_call("ping", latency);
        true
    } else {
        false
    };
    let (stats, plugin_caches) = if storage_up {
        let probe = state
            .probe_cache
            .get(state.storage.as_ref(), state.catalog.loaded_names())
            .await;
        (probe.stats, probe.caches)
    } else {
        (None, BTreeMap::new())
    };
    let (plugins_loaded, plugins_failed) = state.catalog.counts();
    let text = state.metrics.render(&Snapshot {
        stats,
        plugins_loaded,
        plugins_failed,
        storage_up,
        plugin_caches,
        instances: state.catalog.instances(),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
