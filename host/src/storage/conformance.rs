//! The storage conformance suite: the executable form of the semantics in `storage.rs`. Every
//! backend runs every case against a fresh store:
//!
//! ```ignore
//! async fn factory(clock: Arc<ManualClock>) -> Arc<dyn Storage> { ... }
//! spool_host::conformance_tests!(factory);          // one #[tokio::test] per case
//! ```
//!
//! A factory for a backend whose server may be missing returns `Option<Arc<dyn Storage>>`
//! (None skips the case).
//!
//! Cases move time only through the `ManualClock` (never sleep), use types and keys of their
//! own, and assume nothing about the store beyond the factory's freshness. A new storage
//! method needs a new case here, listed in `__spool_conformance_cases!`.

// Test code compiled for other crates' tests (feature `testing`): a failed unwrap is a failed
// case, as in any test.
#![allow(clippy::unwrap_used)]

mod cache_events;
mod claims;
mod enqueue;
mod flow;
mod lifecycle;
mod queries;
mod retention;

pub use cache_events::*;
pub use claims::*;
pub use enqueue::*;
pub use flow::*;
pub use lifecycle::*;
pub use queries::*;
pub use retention::*;

use super::{ClaimRequest, Claimed, Completion, Failure, Storage, StorageError};
use crate::job::{Clock, Job, Millis, NewJob};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

/// The list of cases, handed to a callback macro given as a path in brackets.
#[doc(hidden)]
#[macro_export]
macro_rules! __spool_conformance_cases {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)* ;
            enqueue_stores_a_pending_job_with_defaults,
            enqueue_in_the_future_is_scheduled,
            enqueue_is_idempotent_by_id,
            invalid_jobs_are_refused_and_nothing_is_written,
            batch_enqueue_is_all_or_nothing,
            batch_enqueue_returns_the_live_job_for_a_repeated_unique_key,
            unique_key_returns_the_live_job,
            unique_key_is_free_again_once_the_job_finishes,
            import_keeps_ids_and_states_and_is_idempotent,
            announced_import_writes_job_created_for_what_it_inserts,
            claim_orders_by_priority_then_ready_time_then_id,
            claim_takes_only_the_requested_types_up_to_the_limit,
            a_type_named_twice_in_one_claim_counts_once,
            claim_skips_jobs_that_are_not_pending,
            claim_starts_an_attempt_under_a_fresh_lease,
            renewed_lease_outlives_its_first_expiry,
            expired_leases_are_reaped_counting_attempts,
            late_results_are_fenced_after_reap_and_reclaim,
            release_returns_jobs_without_counting_the_attempt,
            progress_is_recorded_for_the_lease_holder_only,
            many_claimers_take_each_job_exactly_once,
            completion_records_result_logs_and_version,
            completion_commits_followups_with_it,
            invalid_followup_refuses_the_completion,
            failed_attempt_retries_after_promotion,
            failure_on_the_last_attempt_is_final,
            permanent_failure_skips_retries,
            scheduled_jobs_become_pending_when_due,
            cancel_acts_on_each_state,
            cancel_requested_job_ends_cancelled_unless_it_completes,
            replay_puts_failed_and_cancelled_jobs_back,
            replay_refuses_while_another_job_holds_the_unique_key,
            delete_removes_a_job_in_any_state,
            get_returns_none_for_an_unknown_id,
            list_pages_newest_first_with_a_cursor,
            list_filters_by_status_and_type,
            list_by_status_pages_across_types,
            running_jobs_page_newest_first_and_are_counted,
            stats_count_states_per_type,
            retention_sweeps_finished_jobs_by_age,
            retention_keeps_the_newest_per_type,
            retention_overrides_per_type,
            retention_never_touches_live_jobs,
            retention_never_sweeps_a_job_before_its_age,
            cache_stores_and_deletes_values,
            cache_values_expire_with_the_clock,
            cache_increment_counts_from_zero,
            cache_namespaces_do_not_mix,
            cache_quota_limits_each_namespace,
            every_job_transition_writes_an_event,
            events_resume_after_an_id,
            events_of_one_batch_page_like_any_others,
            events_carry_ids_that_need_escaping,
            latest_event_id_names_the_newest_event,
            wait_for_work_wakes_on_new_work,
            wait_for_work_wakes_on_promotion_release_and_replay,
            ping_and_info_describe_the_backend,
            paused_types_start_nothing_until_resumed,
            global_concurrency_caps_running_jobs_and_expired_leases_free_slots,
            rate_limits_count_starts_in_a_sliding_window,
            holds_keep_a_type_back_and_only_extend,
            overrides_win_over_manifest_limits_until_cleared,
            bad_control_changes_are_refused,
            schedules_are_stored_replaced_and_deleted,
            unique_for_keeps_a_finished_jobs_key_taken_for_its_window,
            debounce_gives_the_waiting_job_the_newest_payload_and_pushes_it_back,
        }
    };
}

/// One `#[tokio::test]` per conformance case, named after the case, for a factory
/// `async fn(Arc<ManualClock>) -> S` that builds a fresh store: `S` is `Arc<dyn Storage>`, or
/// `Option<Arc<dyn Storage>>` for a backend whose server may be missing (None: the case
/// passes without running; the factory says why, or fails under CI).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__spool_conformance_cases!([$crate::__spool_conformance_test] $factory);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __spool_conformance_test {
    ($factory:expr ; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let clock = ::std::sync::Arc::new($crate::job::ManualClock::new());
                let fresh = ($factory)(clock.clone()).await;
                let Some(storage) = $crate::storage::conformance::Fresh::store(fresh) else {
                    return;
                };
                $crate::storage::conformance::$case(storage, clock).await;
            }
        )*
    };
}

/// What a `conformance_tests!` factory returns: a store, or maybe one.
pub trait Fresh {
    /// The store, or None to skip the case.
    fn store(self) -> Option<Arc<dyn Storage>>;
}

impl Fresh for Arc<dyn Storage> {
    fn store(self) -> Option<Arc<dyn Storage>> {
        Some(self)
    }
}

impl Fresh for Option<Arc<dyn Storage>> {
    fn store(self) -> Option<Arc<dyn Storage>> {
        self
    }
}

/// A store under test.
pub type Backend = Arc<dyn Storage>;

/// The options a factory opens its store with: the defaults, and a small cache quota (the
/// `cache_quota` case fills it).
pub fn options() -> crate::storage::StorageOptions {
    crate::storage::StorageOptions {
        cache_quota: crate::storage::CacheQuota {
            max_entries: 50,
            max_bytes: 4096,
        },
        ..crate::storage::StorageOptions::default()
    }
}

/// The lease every case claims with.
pub const LEASE: Duration = Duration::from_secs(30);

pub fn json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("test JSON is valid")
}

/// A job of `job_type` with default settings and a small payload.
pub fn job(job_type: &str) -> NewJob {
    NewJob::new(job_type, json(r#"{"n":1}"#))
}

pub fn claim_request(types: &[&str], limit: usize) -> ClaimRequest {
    ClaimRequest {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        limit,
        lease: LEASE,
        worker: "worker-1".into(),
    }
}

pub async fn claim(s: &Backend, types: &[&str], limit: usize) -> Vec<Claimed> {
    s.claim(claim_request(types, limit)).await.expect("claim")
}

/// Claims exactly one job of `job_type`.
pub async fn claim_one(s: &Backend, job_type: &str) -> Claimed {
    let mut claimed = claim(s, &[job_type], 1).await;
    assert_eq!(claimed.len(), 1, "expected one `{job_type}` job to claim");
    claimed.remove(0)
}

pub async fn enqueue(s: &Backend, job: NewJob) -> Job {
    let out = s.enqueue(job).await.expect("enqueue");
    assert!(out.created, "expected a new job");
    out.job
}

pub async fn get(s: &Backend, id: &str) -> Job {
    s.get(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("job `{id}` should exist"))
}

pub fn completion(c: &Claimed) -> Completion {
    Completion {
        id: c.job.id.clone(),
        lease: c.lease.clone(),
        result: json(r#"{"ok":true}"#),
        logs: vec!["done".into()],
        plugin_version: Some("v1".into()),
        followups: vec![],
    }
}

pub fn failure(c: &Claimed, retry_at: Option<Millis>) -> Failure {
    Failure {
        id: c.job.id.clone(),
        lease: c.lease.clone(),
        error: "boom".into(),
        retry_at,
        logs: vec!["trying".into()],
        plugin_version: Some("v1".into()),
    }
}

pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StorageError>, wants: &str) {
    match result {
        Err(StorageError::InvalidInput(message)) => {
            assert!(message.contains(wants), "want `{wants}` in `{message}`")
        }
        other => panic!("want InvalidInput containing `{wants}`, got {other:?}"),
    }
}

/// Payload JSON as a value, so backends may store it in any equivalent form.
pub fn value(raw: &RawValue) -> serde_json::Value {
    serde_json::from_str(raw.get()).expect("stored JSON is valid")
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
