//! Job, stats and plugin handlers of `/api/v1`. Each one parses, calls storage, and answers
//! JSON; `error.rs` turns failures into `{"error": {"code", "message"}}`.

use super::ApiState;
use super::error::{ApiError, ApiResult};
use super::types::{self, JobView, SubmitDefaults};
use crate::job::JobState;
use crate::storage::{CancelOutcome, Enqueued, ListFilter, StorageError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Answers that carry stored jobs are typed, never built with `json!`: `json!` turns them
/// into `Value`s with an `unwrap`, which panics on stored JSON it cannot represent (a
/// deeply nested payload would break every listing that included it). `Json` answers 500.
#[derive(Serialize)]
struct BatchAnswer {
    created: usize,
    jobs: Vec<JobView>,
}

#[derive(Serialize)]
struct ListAnswer {
    jobs: Vec<JobView>,
    next_cursor: Option<String>,
}

/// Largest page of `GET /api/v1/jobs`.
const MAX_LIST: usize = 1000;
const DEFAULT_LIST: usize = 50;

fn defaults<'a>(
    state: &ApiState,
    plugin_attempts: &'a (dyn Fn(&str) -> Option<u32> + Sync),
    plugin_timeout: &'a (dyn Fn(&str) -> Option<std::time::Duration> + Sync),
) -> SubmitDefaults<'a> {
    SubmitDefaults {
        max_payload: state.max_payload,
        max_attempts: state.default_max_attempts,
        plugin_attempts,
        job_timeout: state.job_timeout,
        plugin_timeout,
        now: state.clock.now_ms(),
    }
}

/// The body, or a JSON error that says why it could not be read (413 with the sizes).
fn body_or_error(body: Result<Bytes, BytesRejection>, headers: &HeaderMap) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        // The rest of the body stays unread, so this connection cannot carry another request:
        // the error response says `Connection: close` (see `error.rs`).
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let size = headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!("{v} bytes"))
                .unwrap_or_else(|| "larger".into());
            ApiError::new(
                status,
                "payload_too_large",
                format!(
                    "the request body ({size}) is over this route's limit: payloads may be at \
                     most `max_payload` bytes; send a smaller payload or raise `max_payload`"
                ),
            )
        } else {
            ApiError::new(
                status,
                "bad_body",
                format!("cannot read the request body: {rejection}"),
            )
        }
    })
}

fn view(state: &ApiState, e: Enqueued) -> JobView {
    let handled = state.catalog.handles(&e.job.job_type);
    let mut v = JobView::new(e.job, handled);
    v.created = Some(e.created);
    v
}

pub async fn submit(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body_or_error(body, &headers)?;
    let catalog = state.catalog.clone();
    let timeouts = catalog.clone();
    let attempts = move |t: &str| catalog.max_attempts_for(t);
    let timeout = move |t: &str| timeouts.timeout_for(t);
    let job = types::parse_submit(&body, defaults(&state, &attempts, &timeout))?;
    let job_type = job.job_type.clone();
    let enqueued = state.storage.enqueue(job).await?;
    let status = if enqueued.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if enqueued.created {
        state.metrics.enqueued(&job_type, 1);
    }
    Ok((status, Json(view(&state, enqueued))).into_response())
}

pub async fn submit_batch(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body_or_error(body, &headers)?;
    let catalog = state.catalog.clone();
    let timeouts = catalog.clone();
    let attempts = move |t: &str| catalog.max_attempts_for(t);
    let timeout = move |t: &str| timeouts.timeout_for(t);
    let jobs = types::parse_batch(&body, defaults(&state, &attempts, &timeout))?;
    let results = state.storage.enqueue_batch(jobs).await?;
    let mut created = 0;
    let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
    for e in results.iter().filter(|e| e.created) {
        created += 1;
        *per_type.entry(e.job.job_type.clone()).or_default() += 1;
    }
    for (t, n) in per_type {
        state.metrics.enqueued(&t, n);
    }
    let views: Vec<JobView> = results.into_iter().map(|e| view(&state, e)).collect();
    let status = if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(BatchAnswer {
            created,
            jobs: views,
        }),
    )
        .into_response())
}

pub async fn get_job(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let job = state
        .storage
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(&id))?;
    let handled = state.catalog.handles(&job.job_type);
    Ok(Json(JobView::new(job, handled)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list_jobs(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query: {}; use status=, type=, limit= and cursor=",
            e.body_text()
        ))
    })?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_LIST,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "`limit` must be a number from 1 to {MAX_LIST} (got {l:?})"
                )));
            }
        },
    };
    let filter = ListFilter {
        status,
        job_type: q.job_type.filter(|t| !t.is_empty()),
        limit,
        cursor: q.cursor.filter(|c| !c.is_empty()),
    };
    let page = state.storage.list(filter).await.map_err(|e| match e {
        StorageError::InvalidInput(m) => ApiError::bad_request(format!("`cursor`: {m}")),
        e => e.into(),
    })?;
    let jobs: Vec<JobView> = page
        .jobs
        .into_iter()
        .map(|j| {
            let handled = state.catalog.handles(&j.job_type);
            JobView::new(j, handled)
        })
        .collect();
    Ok(Json(ListAnswer {
        jobs,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

pub async fn retry_job(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    match state.storage.replay(&id).await {
        Ok(Some(job)) => {
            let handled = state.catalog.handles(&job.job_type);
            Ok(Json(JobView::new(job, handled)))
        }
        Ok(None) => Err(ApiError::not_found(&id)),
        Err(StorageError::InvalidInput(m)) => Err(ApiError::conflict(m)),
        Err(e) => Err(e.into()),
    }
}

pub async fn cancel_job(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let outcome = state.storage.cancel(&id).await?;
    let (status, job) = match outcome {
        CancelOutcome::Cancelled(job) => (StatusCode::OK, job),
        // Running: stop it now if it runs here; another daemon sees the request at its next
        // lease renewal.
        CancelOutcome::Requested(job) => {
            (state.cancel_local)(&job.id);
            (StatusCode::ACCEPTED, job)
        }
        CancelOutcome::AlreadyFinished(job) if job.status == JobState::Cancelled => {
            (StatusCode::OK, job)
        }
        CancelOutcome::AlreadyFinished(job) => {
            return Err(ApiError::conflict(format!(
                "job `{}` is already {}: nothing to cancel",
                job.id, job.status
            )));
        }
        CancelOutcome::NotFound => return Err(ApiError::not_found(&id)),
    };
    let handled = state.catalog.handles(&job.job_type);
    Ok((status, Json(JobView::new(job, handled))).into_response())
}

pub async fn delete_job(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.storage.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&id))
    }
}

pub async fn stats(State(state): State<Arc<ApiState>>) -> ApiResult<Json<serde_json::Value>> {
    // Bounded like the metrics: past `MAX_TYPE_SERIES` types, the rest are one `(other)` row.
    let stats = crate::metrics::cap_types(
        &state.storage.stats().await?,
        crate::metrics::MAX_TYPE_SERIES,
    );
    let controls = state.storage.type_controls().await?;
    let now = state.clock.now_ms();
    let mut totals: BTreeMap<JobState, u64> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
    let mut types = serde_json::Map::new();
    let mut unhandled = Vec::new();
    let rates = state.metrics.rates();
    for (name, ts) in &stats.types {
        for (s, n) in &ts.counts {
            *totals.entry(*s).or_default() += n;
        }
        let handled = state.catalog.handles(name);
        let waiting = ts.counts.get(&JobState::Pending).copied().unwrap_or(0)
            + ts.counts.get(&JobState::Scheduled).copied().unwrap_or(0)
            + ts.counts.get(&JobState::Retrying).copied().unwrap_or(0);
        if !handled && waiting > 0 && name != crate::metrics::OTHER_TYPES {
            unhandled.push(name.clone());
        }
        types.insert(
            name.clone(),
            json!({
                "counts": ts.counts,
                "oldest_pending_age_ms": ts.oldest_pending_age_ms,
                "handled": handled,
                "jobs_per_minute": rates.get(name).map_or(0.0, |r| r.jobs_per_minute),
                "avg_duration_ms": rates.get(name).and_then(|r| r.avg_duration_ms),
                "p95_duration_ms": rates.get(name).and_then(|r| r.p95_duration_ms),
                "flow": controls.get(name).map(|c| super::flow::control_view(c, now)),
            }),
        );
    }
    let paused: Vec<&String> = controls
        .iter()
        .filter(|(_, c)| c.paused)
        .map(|(t, _)| t)
        .collect();
    let note = (!unhandled.is_empty()).then(|| {
        format!(
            "no loaded plugin handles {}: those jobs wait until a plugin for them is loaded",
            unhandled
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(Json(json!({
        "backend": state.storage.backend(),
        "totals": totals,
        "types": types,
        "unhandled_types": unhandled,
        "paused_types": paused,
        // Jobs per minute and average duration: attempts finished by this daemon in the
        // last 5 minutes (or since it started, when that is shorter).
        "rate_window_s": state.metrics.uptime().clamp(std::time::Duration::from_secs(1), crate::metrics::RATE_WINDOW).as_secs(),
        "note": note,
        "workers": {
            "total": state.metrics.total_workers(),
            "busy": state.metrics.busy_workers(),
        },
    })))
}

pub async fn plugins(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(json!({ "plugins": state.catalog.plugins() }))
}

/// `GET /api/v1/stats/throughput`: attempts per minute over the last hour, by this daemon.
pub async fn throughput(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(json!({
        "scope": "attempts finished by this daemon",
        "minutes": state.metrics.throughput(),
    }))
}
