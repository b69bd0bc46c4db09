//! Flow control: per job type `GET /api/v1/types`, `GET`/`PUT /api/v1/types/{type}`,
//! `POST /api/v1/types/{type}/pause` and `/resume`; cron schedules `GET`/`POST /api/v1/schedules`,
//! `DELETE /api/v1/schedules/{name}`, `POST /api/v1/schedules/{name}/pause` and `/resume`.
//! The state lives in storage, so every daemon sharing it obeys a change made through any.

use super::ApiState;
use super::error::{ApiError, ApiResult};
use crate::job::serde_time::format_rfc3339;
use crate::storage::flow::{
    ControlChange, Limits, RateLimit, Schedule, ScheduleRecord, TypeControl,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use std::sync::Arc;

/// A type's flow control as the API shows it: what is in force, and where it comes from.
pub fn control_view(control: &TypeControl, now: crate::job::Millis) -> Value {
    let limits = |l: &Limits| {
        json!({
            "rate_limit": l.rate.map(|r| r.to_string()),
            "global_concurrency": l.concurrency,
        })
    };
    json!({
        "paused": control.paused,
        "held_until": control.held_until.filter(|t| *t > now).map(format_rfc3339),
        "rate_limit": control.rate().map(|r| r.to_string()),
        "global_concurrency": control.concurrency(),
        "manifest": limits(&control.manifest),
        "overrides": limits(&control.overrides),
    })
}

pub async fn list(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Value>> {
    let now = state.clock.now_ms();
    let controls = state.storage.type_controls().await?;
    let types: serde_json::Map<String, Value> = controls
        .iter()
        .map(|(t, c)| (t.clone(), control_view(c, now)))
        .collect();
    Ok(Json(json!({ "types": types })))
}

async fn change(state: &ApiState, job_type: &str, change: ControlChange) -> ApiResult<Json<Value>> {
    let control = state.storage.control_type(job_type, change).await?;
    let mut view = control_view(&control, state.clock.now_ms());
    if let Some(obj) = view.as_object_mut() {
        obj.insert("type".into(), Value::from(job_type));
    }
    Ok(Json(view))
}

pub async fn pause(
    State(state): State<Arc<ApiState>>,
    Path(job_type): Path<String>,
) -> ApiResult<Json<Value>> {
    change(&state, &job_type, ControlChange::Pause).await
}

pub async fn resume(
    State(state): State<Arc<ApiState>>,
    Path(job_type): Path<String>,
) -> ApiResult<Json<Value>> {
    change(&state, &job_type, ControlChange::Resume).await
}

pub async fn get_type(
    State(state): State<Arc<ApiState>>,
    Path(job_type): Path<String>,
) -> ApiResult<Json<Value>> {
    crate::job::validate_job_type(&job_type).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let control = state
        .storage
        .type_controls()
        .await?
        .remove(&job_type)
        .unwrap_or_default();
    let mut view = control_view(&control, state.clock.now_ms());
    if let Some(obj) = view.as_object_mut() {
        obj.insert("type".into(), Value::from(job_type));
    }
    Ok(Json(view))
}

/// `PUT /api/v1/types/{type}` with `{"rate_limit": "100/1m", "global_concurrency": 5,
/// "paused": true}`: each limit present sets the run-time override, `null` clears it (the
/// plugin manifest's value applies again), absent leaves it; `paused` pauses or resumes.
pub async fn put_type(
    State(state): State<Arc<ApiState>>,
    Path(job_type): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (rate, concurrency, paused) = parse_limits(&body).map_err(ApiError::bad_request)?;
    let mut view = None;
    if rate.is_some() || concurrency.is_some() {
        view = Some(
            change(
                &state,
                &job_type,
                ControlChange::Override { rate, concurrency },
            )
            .await?,
        );
    }
    if let Some(p) = paused {
        let c = if p {
            ControlChange::Pause
        } else {
            ControlChange::Resume
        };
        view = Some(change(&state, &job_type, c).await?);
    }
    view.ok_or_else(|| ApiError::bad_request("the body sets nothing"))
}

type LimitChanges = (Option<Option<RateLimit>>, Option<Option<u32>>, Option<bool>);

fn parse_limits(body: &[u8]) -> Result<LimitChanges, String> {
    let hint = r#"send {"rate_limit": "100/1m", "global_concurrency": 5, "paused": false} (null clears a limit)"#;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not valid JSON ({e}): {hint}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("the body must be a JSON object: {hint}"))?;
    let (mut rate, mut concurrency, mut paused) = (None, None, None);
    for (key, value) in obj {
        match key.as_str() {
            "rate_limit" => {
                rate = Some(match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.parse::<RateLimit>()?),
                    other => {
                        return Err(format!(
                            "`rate_limit` must be a string such as \"100/1m\" or null (got {other})"
                        ));
                    }
                })
            }
            "global_concurrency" => {
                concurrency = Some(match value {
                    Value::Null => None,
                    other => {
                        let n = other
                            .as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| {
                                format!(
                                    "`global_concurrency` must be a whole number or null (got {other})"
                                )
                            })?;
                        Some(crate::storage::flow::validate_concurrency(n)?)
                    }
                })
            }
            "paused" => {
                paused = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| format!("`paused` must be true or false (got {value})"))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown field `{other}` (expected `rate_limit`, `global_concurrency` or \
                     `paused`)"
                ));
            }
        }
    }
    if rate.is_none() && concurrency.is_none() && paused.is_none() {
        return Err(format!("the body sets nothing: {hint}"));
    }
    Ok((rate, concurrency, paused))
}

/// A schedule as the API shows it: the stored record, and its next three fire times (or why
/// it cannot fire).
pub fn schedule_view(r: &ScheduleRecord, now: crate::job::Millis) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    let next = crate::cron::parse(&r.schedule.cron, &r.schedule.timezone).map(|spec| {
        spec.upcoming(now, 3)
            .into_iter()
            .map(format_rfc3339)
            .collect::<Vec<_>>()
    });
    if let Some(obj) = v.as_object_mut() {
        match next {
            Ok(times) => obj.insert("next".into(), json!(times)),
            Err(e) => obj.insert("error".into(), json!(e)),
        };
    }
    v
}

pub async fn schedules(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Value>> {
    let all = state.storage.schedules().await?;
    let now = state.clock.now_ms();
    let views: Vec<Value> = all.iter().map(|r| schedule_view(r, now)).collect();
    Ok(Json(json!({ "schedules": views })))
}

/// `POST /api/v1/schedules`: create or replace a schedule by name. Body: `name`, `cron`,
/// `type`, and optionally `timezone` (UTC), `payload` ({}), `priority`, `max_attempts`,
/// `timeout_ms`, `missed` (`run_once` or `skip`), `paused`.
pub async fn put_schedule(
    State(state): State<Arc<ApiState>>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let schedule: Schedule = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a schedule ({e}): send {{\"name\": \"sync\", \"cron\": \"*/15 * * * *\", \
             \"type\": \"sync\", \"payload\": {{}}}}"
        ))
    })?;
    crate::cron::parse(&schedule.cron, &schedule.timezone).map_err(ApiError::bad_request)?;
    if schedule.plugin.is_some() {
        return Err(ApiError::bad_request(
            "`plugin` is set by the daemon for schedules a plugin manifest declares; leave it out",
        ));
    }
    let record = state.storage.put_schedule(schedule).await?;
    Ok(Json(schedule_view(&record, state.clock.now_ms())))
}

pub async fn delete_schedule(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    if state.storage.delete_schedule(&name).await? {
        Ok(Json(json!({ "deleted": name })))
    } else {
        Err(no_schedule(&name))
    }
}

fn no_schedule(name: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no schedule named `{name}`: `spool schedules` lists them"),
    )
}

async fn set_paused(state: &ApiState, name: &str, paused: bool) -> ApiResult<Json<Value>> {
    let all = state.storage.schedules().await?;
    let Some(r) = all.into_iter().find(|r| r.schedule.name == name) else {
        return Err(no_schedule(name));
    };
    let schedule = Schedule {
        paused,
        ..r.schedule
    };
    let record = state.storage.put_schedule(schedule).await?;
    Ok(Json(schedule_view(&record, state.clock.now_ms())))
}

pub async fn pause_schedule(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    set_paused(&state, &name, true).await
}

pub async fn resume_schedule(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    set_paused(&state, &name, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bodies_set_clear_or_leave_each_field() {
        let (r, c, p) = parse_limits(br#"{"rate_limit":"5/1s"}"#).unwrap();
        assert_eq!(r.unwrap().unwrap().count, 5);
        assert_eq!((c, p), (None, None));
        let (r, c, _) = parse_limits(br#"{"rate_limit":null,"global_concurrency":3}"#).unwrap();
        assert_eq!(r, Some(None));
        assert_eq!(c, Some(Some(3)));
        let (_, _, p) = parse_limits(br#"{"paused":true}"#).unwrap();
        assert_eq!(p, Some(true));
        for bad in [
            &br#"{}"#[..],
            br#"[]"#,
            br#"{"rate":"5/1s"}"#,
            br#"{"global_concurrency":0}"#,
            br#"{"global_concurrency":"3"}"#,
            br#"{"rate_limit":"fast"}"#,
            br#"{"paused":"yes"}"#,
            b"{",
        ] {
            assert!(
                parse_limits(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
