//! `POST /api/v1/jobs/bulk`: retry, cancel or delete many jobs at once, named by id or by a
//! filter (`{"status", "type"}`), with `dry_run` to count first (the dashboard's confirmation
//! says how many jobs an action touches).
//!
//! Built on the per-job storage methods (`replay`, `cancel`, `delete`) and `list`, so it means
//! the same on every backend. A filter is resolved to ids first, page by page, and only then
//! acted on: acting while paging would move jobs out of the filter under the cursor. Both
//! forms stop at `MAX_BULK` jobs a call; `truncated` says when more matched (call again).

use super::ApiState;
use super::error::{ApiError, ApiResult};
use crate::job::JobState;
use crate::storage::{CancelOutcome, ListFilter, MAX_LIST_LIMIT, StorageError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most jobs one call acts on: above the default `failed_max_count` (5000 per type), so
/// "every failed job of type T" fits in one call.
pub const MAX_BULK: usize = 10_000;
/// Per-job errors listed in an answer (`error_count` has them all).
const MAX_LISTED_ERRORS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    Retry,
    Cancel,
    Delete,
}

impl BulkAction {
    /// Whether a job in `state` can take this action.
    fn applies_to(self, state: JobState) -> bool {
        match self {
            BulkAction::Retry => matches!(state, JobState::Failed | JobState::Cancelled),
            BulkAction::Cancel => state.is_live(),
            BulkAction::Delete => true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkFilter {
    status: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRequest {
    action: BulkAction,
    ids: Option<Vec<String>>,
    filter: Option<BulkFilter>,
    #[serde(default)]
    dry_run: bool,
}

/// Which jobs a request names, checked.
#[derive(Debug, PartialEq)]
enum Target {
    Ids(Vec<String>),
    Filter {
        status: JobState,
        job_type: Option<String>,
    },
}

/// A checked request.
#[derive(Debug)]
struct Bulk {
    action: BulkAction,
    target: Target,
    dry_run: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct BulkError {
    pub id: String,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct BulkAnswer {
    pub action: BulkAction,
    pub dry_run: bool,
    /// Jobs named (ids) or found (filter) that the action applies to; for a dry run, how
    /// many it would touch.
    pub matched: u64,
    /// Jobs the action changed (0 for a dry run). A running job asked to cancel counts here
    /// and in `cancel_requested`.
    pub touched: u64,
    pub cancel_requested: u64,
    /// More than `MAX_BULK` jobs matched the filter: only the newest `MAX_BULK` were taken.
    pub truncated: bool,
    pub error_count: u64,
    /// The first `MAX_LISTED_ERRORS` per-job errors.
    pub errors: Vec<BulkError>,
}

fn parse(body: &[u8]) -> Result<Bulk, ApiError> {
    let req: BulkRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "bad bulk request: {e}; send {{\"action\": \"retry\"|\"cancel\"|\"delete\", \
             \"ids\": [...]}} or {{\"action\": ..., \"filter\": {{\"status\": ..., \"type\": \
             ...}}}}, with \"dry_run\": true to count only"
        ))
    })?;
    let target = match (req.ids, req.filter) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either `ids` or `filter`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "say which jobs: `ids` (a list of job ids) or `filter` ({\"status\", \"type\"})",
            ));
        }
        (Some(ids), None) => {
            if ids.is_empty() {
                return Err(ApiError::bad_request(
                    "`ids` is empty: name at least one job",
                ));
            }
            if ids.len() > MAX_BULK {
                return Err(ApiError::bad_request(format!(
                    "`ids` has {} jobs, over the limit of {MAX_BULK}: split the request",
                    ids.len()
                )));
            }
            let mut seen = std::collections::HashSet::new();
            Target::Ids(
                ids.into_iter()
                    .filter(|id| seen.insert(id.clone()))
                    .collect(),
            )
        }
        (None, Some(f)) => {
            // A status is required so that a filter never means "every job there is".
            let Some(status) = f.status.filter(|s| !s.is_empty()) else {
                return Err(ApiError::bad_request(
                    "`filter.status` is required (e.g. {\"status\": \"failed\", \"type\": \"resize\"})",
                ));
            };
            let status: JobState = status
                .parse()
                .map_err(|e: crate::job::JobError| ApiError::bad_request(e.to_string()))?;
            if !req.action.applies_to(status) {
                return Err(ApiError::bad_request(format!(
                    "cannot {} {status} jobs: retry takes failed or cancelled jobs, cancel takes \
                     scheduled, pending, running or retrying ones",
                    action_verb(req.action)
                )));
            }
            Target::Filter {
                status,
                job_type: f.job_type.filter(|t| !t.is_empty()),
            }
        }
    };
    Ok(Bulk {
        action: req.action,
        target,
        dry_run: req.dry_run,
    })
}

fn action_verb(a: BulkAction) -> &'static str {
    match a {
        BulkAction::Retry => "retry",
        BulkAction::Cancel => "cancel",
        BulkAction::Delete => "delete",
    }
}

/// The ids a filter selects, newest first, at most `MAX_BULK` (and whether more matched).
async fn resolve_filter(
    state: &ApiState,
    status: JobState,
    job_type: Option<String>,
) -> ApiResult<(Vec<String>, bool)> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .storage
            .list(ListFilter {
                status: Some(status),
                job_type: job_type.clone(),
                limit: MAX_LIST_LIMIT,
                cursor,
            })
            .await?;
        for job in page.jobs {
            if ids.len() == MAX_BULK {
                return Ok((ids, true));
            }
            ids.push(job.id);
        }
        match page.next_cursor {
            Some(c) if ids.len() < MAX_BULK => cursor = Some(c),
            Some(_) => return Ok((ids, true)),
            None => return Ok((ids, false)),
        }
    }
}

/// Collects the answer while acting.
struct Tally {
    answer: BulkAnswer,
}

impl Tally {
    fn error(&mut self, id: &str, code: &'static str, message: String) {
        self.answer.error_count += 1;
        if self.answer.errors.len() < MAX_LISTED_ERRORS {
            self.answer.errors.push(BulkError {
                id: id.to_string(),
                code,
                message,
            });
        }
    }

    fn storage_error(&mut self, id: &str, e: StorageError) {
        let code = ApiError::from(e.clone()).code;
        self.error(id, code, e.to_string());
    }
}

pub async fn bulk(State(state): State<Arc<ApiState>>, body: Bytes) -> ApiResult<Json<BulkAnswer>> {
    let req = parse(&body)?;
    let (ids, truncated, filtered) = match req.target {
        Target::Ids(ids) => (ids, false, false),
        Target::Filter { status, job_type } => {
            let (ids, truncated) = resolve_filter(&state, status, job_type).await?;
            (ids, truncated, true)
        }
    };
    let mut tally = Tally {
        answer: BulkAnswer {
            action: req.action,
            dry_run: req.dry_run,
            matched: 0,
            touched: 0,
            cancel_requested: 0,
            truncated,
            error_count: 0,
            errors: Vec::new(),
        },
    };
    if req.dry_run {
        if filtered {
            tally.answer.matched = ids.len() as u64;
        } else {
            for id in &ids {
                match state.storage.get(id).await {
                    Ok(Some(job)) if req.action.applies_to(job.status) => {
                        tally.answer.matched += 1;
                    }
                    Ok(Some(job)) => {
                        tally.error(id, "conflict", not_applicable(req.action, &job.status))
                    }
                    Ok(None) => tally.error(id, "not_found", format!("no job with id `{id}`")),
                    Err(e) => tally.storage_error(id, e),
                }
            }
        }
        return Ok(Json(tally.answer));
    }
    for id in &ids {
        act(&state, req.action, id, &mut tally).await;
    }
    Ok(Json(tally.answer))
}

fn not_applicable(action: BulkAction, status: &JobState) -> String {
    format!("the job is {status}: cannot {} it", action_verb(action))
}

/// One job: `matched` counts the jobs the action applied to (the rest are errors).
async fn act(state: &ApiState, action: BulkAction, id: &str, tally: &mut Tally) {
    match action {
        BulkAction::Retry => match state.storage.replay(id).await {
            Ok(Some(_)) => {
                tally.answer.matched += 1;
                tally.answer.touched += 1;
            }
            Ok(None) => tally.error(id, "not_found", format!("no job with id `{id}`")),
            Err(StorageError::InvalidInput(m)) => tally.error(id, "conflict", m),
            Err(e) => tally.storage_error(id, e),
        },
        BulkAction::Cancel => match state.storage.cancel(id).await {
            Ok(CancelOutcome::Cancelled(_)) => {
                tally.answer.matched += 1;
                tally.answer.touched += 1;
            }
            Ok(CancelOutcome::Requested(job)) => {
                (state.cancel_local)(&job.id);
                tally.answer.matched += 1;
                tally.answer.touched += 1;
                tally.answer.cancel_requested += 1;
            }
            Ok(CancelOutcome::AlreadyFinished(job)) => {
                tally.error(id, "conflict", not_applicable(action, &job.status));
            }
            Ok(CancelOutcome::NotFound) => {
                tally.error(id, "not_found", format!("no job with id `{id}`"));
            }
            Err(e) => tally.storage_error(id, e),
        },
        BulkAction::Delete => match state.storage.delete(id).await {
            Ok(true) => {
                tally.answer.matched += 1;
                tally.answer.touched += 1;
            }
            Ok(false) => tally.error(id, "not_found", format!("no job with id `{id}`")),
            Err(e) => tally.storage_error(id, e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn ids_request_is_deduplicated() {
        let b = parse(br#"{"action":"retry","ids":["a","b","a"]}"#).unwrap();
        assert_eq!(b.action, BulkAction::Retry);
        assert_eq!(b.target, Target::Ids(vec!["a".into(), "b".into()]));
        assert!(!b.dry_run);
    }

    #[test]
    fn filter_request_needs_a_status_that_fits_the_action() {
        let b = parse(
            br#"{"action":"delete","filter":{"status":"completed","type":"echo"},"dry_run":true}"#,
        )
        .unwrap();
        assert!(b.dry_run);
        assert_eq!(
            b.target,
            Target::Filter {
                status: JobState::Completed,
                job_type: Some("echo".into())
            }
        );
        assert!(
            err(r#"{"action":"retry","filter":{"type":"echo"}}"#)
                .contains("`filter.status` is required")
        );
        assert!(
            err(r#"{"action":"retry","filter":{"status":"pending"}}"#)
                .contains("cannot retry pending jobs")
        );
        assert!(
            err(r#"{"action":"cancel","filter":{"status":"failed"}}"#)
                .contains("cannot cancel failed jobs")
        );
        assert!(err(r#"{"action":"retry","filter":{"status":"late"}}"#).contains("late"));
    }

    #[test]
    fn bad_shapes_say_what_to_send() {
        assert!(err(r#"{"action":"retry"}"#).contains("say which jobs"));
        assert!(err(r#"{"action":"retry","ids":[]}"#).contains("`ids` is empty"));
        assert!(
            err(r#"{"action":"retry","ids":["a"],"filter":{"status":"failed"}}"#)
                .contains("not both")
        );
        assert!(err(r#"{"action":"explode","ids":["a"]}"#).contains("bad bulk request"));
        assert!(err(r#"{"action":"retry","ids":["a"],"extra":1}"#).contains("unknown field"));
        let many: Vec<String> = (0..=MAX_BULK).map(|i| i.to_string()).collect();
        let body = serde_json::json!({"action": "delete", "ids": many}).to_string();
        assert!(err(&body).contains("over the limit"));
    }
}
