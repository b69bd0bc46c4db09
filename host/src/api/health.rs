//! `GET /health` (200 healthy or degraded, 503 unhealthy or stopping) and `GET /metrics`
//! (Prometheus text). Neither needs the API token: probes and scrapers live outside `/api`.

use super::ApiState;
use crate::job::JobState;
use crate::metrics::Snapshot;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A storage call slower than this makes the daemon `unhealthy` for this probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A ping slower than this makes it `degraded`.
const SLOW_PING: Duration = Duration::from_millis(500);

pub async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let mut problems: Vec<String> = Vec::new();
    let mut unhealthy = false;
    let ping = tokio::time::timeout(PROBE_TIMEOUT, state.storage.ping()).await;
    let storage = match ping {
        Ok(Ok(latency)) => {
            if latency > SLOW_PING {
                problems.push(format!("storage ping took {} ms", latency.as_millis()));
            }
            json!({ "ok": true, "latency_ms": latency.as_secs_f64() * 1000.0 })
        }
        Ok(Err(e)) => {
            unhealthy = true;
            problems.push(format!("storage: {e}"));
            json!({ "ok": false, "error": e.to_string() })
        }
        Err(_) => {
            unhealthy = true;
            problems.push(format!(
                "storage did not answer a ping within {}s",
                PROBE_TIMEOUT.as_secs()
            ));
            json!({ "ok": false, "error": "ping timed out" })
        }
    };
    let info = match tokio::time::timeout(PROBE_TIMEOUT, state.storage.info()).await {
        Ok(Ok(info)) => {
            problems.extend(info.warnings.iter().cloned());
            Some(info)
        }
        _ => None,
    };
    let queue = match tokio::time::timeout(PROBE_TIMEOUT, state.storage.stats()).await {
        Ok(Ok(stats)) => {
            let mut totals: BTreeMap<JobState, u64> =
                JobState::ALL.iter().map(|s| (*s, 0)).collect();
            for ts in stats.types.values() {
                for (s, n) in &ts.counts {
                    *totals.entry(*s).or_default() += n;
                }
            }
            json!(totals)
        }
        _ => serde_json::Value::Null,
    };
    let (loaded, failed) = state.catalog.counts();
    if failed > 0 {
        problems.push(format!(
            "{failed} plugin file(s) failed to load: see GET /api/v1/plugins"
        ));
    }
    let stopping = *state.stop.borrow();
    let status = if stopping {
        "stopping"
    } else if unhealthy {
        "unhealthy"
    } else if problems.is_empty() {
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
        "backend": state.storage.backend(),
        "storage": storage,
        "storage_info": info,
        "queue": queue,
        "plugins": { "loaded": loaded, "failed": failed },
        "workers": { "total": state.metrics.total_workers(), "busy": state.metrics.busy_workers() },
        "uptime_s": state.started.elapsed().as_secs(),
        "problems": problems,
    });
    (code, Json(body)).into_response()
}

pub async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let stats = match tokio::time::timeout(PROBE_TIMEOUT, state.storage.stats()).await {
        Ok(Ok(s)) => Some(s),
        _ => None,
    };
    let (plugins_loaded, plugins_failed) = state.catalog.counts();
    let text = state.metrics.render(&Snapshot {
        stats,
        plugins_loaded,
        plugins_failed,
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
