//! Every SQL statement the SQLite backend runs, loaded from the `.sql` files beside this one,
//! and the ordered schema migrations.

/// Schema migrations, in order: entry `n` takes a file from `user_version` n to n + 1.
/// Append only; never edit a released one (files already at that version skip it).
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("schema/001_initial.sql"),
    include_str!("schema/002_flow_control.sql"),
    include_str!("schema/003_cache_usage.sql"),
    include_str!("schema/004_list_by_status.sql"),
];

pub(super) const WRITER_SETTINGS: &str = include_str!("sql/writer_settings.sql");
pub(super) const READER_SETTINGS: &str = include_str!("sql/reader_settings.sql");
pub(super) const USER_TABLES: &str = include_str!("sql/user_tables.sql");
pub(super) const CHECKPOINT: &str = include_str!("sql/checkpoint.sql");

pub(super) const INSERT_JOB: &str = include_str!("sql/insert_job.sql");
pub(super) const JOB_BY_ID: &str = include_str!("sql/job_by_id.sql");
pub(super) const LIVE_HOLDER: &str = include_str!("sql/live_holder.sql");
pub(super) const WINDOW_HOLDER: &str = include_str!("sql/window_holder.sql");
pub(super) const DEBOUNCE: &str = include_str!("sql/debounce.sql");
pub(super) const CLAIM: &str = include_str!("sql/claim.sql");
pub(super) const CLAIM_READY: &str = include_str!("sql/claim_ready.sql");
pub(super) const RENEW: &str = include_str!("sql/renew.sql");
pub(super) const PROGRESS: &str = include_str!("sql/progress.sql");
pub(super) const COMPLETE: &str = include_str!("sql/complete.sql");
pub(super) const COMPLETED_LEASE: &str = include_str!("sql/completed_lease.sql");
pub(super) const LEASED_JOB: &str = include_str!("sql/leased_job.sql");
pub(super) const END_ATTEMPT: &str = include_str!("sql/end_attempt.sql");
pub(super) const CANCEL_NOW: &str = include_str!("sql/cancel_now.sql");
pub(super) const REQUEST_CANCEL: &str = include_str!("sql/request_cancel.sql");
pub(super) const REPLAY: &str = include_str!("sql/replay.sql");
pub(super) const DELETE_JOB: &str = include_str!("sql/delete_job.sql");
pub(super) const PROMOTE_DUE: &str = include_str!("sql/promote_due.sql");
pub(super) const EXPIRED_LEASES: &str = include_str!("sql/expired_leases.sql");
pub(super) const FINISHED_TYPES: &str = include_str!("sql/finished_types.sql");
pub(super) const SWEEP_BY_AGE: &str = include_str!("sql/sweep_by_age.sql");
pub(super) const COUNT_BOUNDARY: &str = include_str!("sql/count_boundary.sql");
pub(super) const SWEEP_BY_COUNT: &str = include_str!("sql/sweep_by_count.sql");
pub(super) const TRIM_EVENTS: &str = include_str!("sql/trim_events.sql");
pub(super) const PURGE_CACHE: &str = include_str!("sql/purge_cache.sql");
pub(super) const LIST_JOBS: &str = include_str!("sql/list_jobs.sql");
pub(super) const JOB_TYPES: &str = include_str!("sql/job_types.sql");
pub(super) const IDS_BY_TYPE_STATUS: &str = include_str!("sql/ids_by_type_status.sql");
pub(super) const STATS_COUNTS: &str = include_str!("sql/stats_counts.sql");
pub(super) const OLDEST_PENDING: &str = include_str!("sql/oldest_pending.sql");
pub(super) const INSERT_EVENT: &str = include_str!("sql/insert_event.sql");
pub(super) const EVENTS_SINCE: &str = include_str!("sql/events_since.sql");
pub(super) const CACHE_GET: &str = include_str!("sql/cache_get.sql");
pub(super) const CACHE_SET: &str = include_str!("sql/cache_set.sql");
pub(super) const CACHE_DELETE: &str = include_str!("sql/cache_delete.sql");
pub(super) const CACHE_USAGE: &str = include_str!("sql/cache_usage.sql");
pub(super) const CACHE_ENTRY_SIZE: &str = include_str!("sql/cache_entry_size.sql");
pub(super) const PURGE_CACHE_NS: &str = include_str!("sql/purge_cache_ns.sql");

pub(super) const TYPE_CONTROLS: &str = "SELECT type, control FROM type_controls";
pub(super) const TYPE_CONTROL: &str = "SELECT control FROM type_controls WHERE type = ?1";
pub(super) const PUT_TYPE_CONTROL: &str = "INSERT INTO type_controls (type, control) VALUES (?1, ?2) \
     ON CONFLICT (type) DO UPDATE SET control = excluded.control";
pub(super) const DELETE_TYPE_CONTROL: &str = "DELETE FROM type_controls WHERE type = ?1";
pub(super) const RUNNING_OF_TYPE: &str =
    "SELECT count(*) FROM jobs WHERE type = ?1 AND status = 'running'";
pub(super) const HAS_READY: &str =
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE type = ?1 AND status = 'pending')";
pub(super) const TRIM_RATE_STARTS: &str = "DELETE FROM rate_starts WHERE type = ?1 AND at <= ?2";
pub(super) const RATE_STARTS: &str = "SELECT at FROM rate_starts WHERE type = ?1";
pub(super) const ADD_RATE_START: &str = "INSERT INTO rate_starts (type, at) VALUES (?1, ?2)";
pub(super) const CLEAR_RATE_STARTS: &str = "DELETE FROM rate_starts WHERE type = ?1";

pub(super) const SCHEDULES: &str =
    "SELECT name, spec, last_tick, created_at FROM schedules ORDER BY name";
pub(super) const SCHEDULE: &str =
    "SELECT name, spec, last_tick, created_at FROM schedules WHERE name = ?1";
pub(super) const PUT_SCHEDULE: &str = "INSERT INTO schedules (name, spec, last_tick, created_at) VALUES (?1, ?2, NULL, ?3) \
     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec";
pub(super) const DELETE_SCHEDULE: &str = "DELETE FROM schedules WHERE name = ?1";
pub(super) const ADVANCE_SCHEDULE: &str =
    "UPDATE schedules SET last_tick = ?3 WHERE name = ?1 AND last_tick IS ?2";

/// The claim statement for `types` distinct types: each has two parameters from ?5 on, its
/// name and how many of its jobs the claim may take.
pub(super) fn claim(types: usize) -> String {
    let arms: Vec<String> = (0..types)
        .map(|i| {
            CLAIM_READY
                .replace("?TYPE", &format!("?{}", 5 + 2 * i))
                .replace("?ARM_LIMIT", &format!("?{}", 6 + 2 * i))
        })
        .collect();
    CLAIM.replace("/*ready*/", &arms.join("\nUNION ALL\n"))
}

/// The list statement with the filters that are set (`?2` status, `?3` type).
pub(super) fn list(status: bool, job_type: bool) -> String {
    let mut filters = String::new();
    if status {
        filters.push_str("AND status = ?2 ");
    }
    if job_type {
        filters.push_str("AND type = ?3 ");
    }
    LIST_JOBS.replace("/*filters*/", &filters)
}
