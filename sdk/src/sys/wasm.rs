//! Host calls through the generated WIT imports (wasm32 only).

use super::FollowUp;
use crate::bindings::spool::plugin::{cache, config, enqueue as wit_enqueue, log as wit_log};
use crate::bindings::spool::plugin::{progress as wit_progress, types};
use crate::log::Level;

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit_log::Level::Trace,
        Level::Debug => wit_log::Level::Debug,
        Level::Info => wit_log::Level::Info,
        Level::Warn => wit_log::Level::Warn,
        Level::Error => wit_log::Level::Error,
    };
    wit_log::log(level, message);
}

pub(crate) fn progress_report(percent: u8, message: Option<&str>) {
    wit_progress::report(percent, message);
}

pub(crate) fn cancelled() -> bool {
    wit_progress::cancelled()
}

pub(crate) fn cache_get(key: &str) -> Result<Option<String>, String> {
    cache::get(key)
}

pub(crate) fn cache_set(key: &str, value: &str, ttl_ms: Option<u64>) -> Result<(), String> {
    cache::set(key, value, ttl_ms)
}

pub(crate) fn cache_delete(key: &str) -> Result<bool, String> {
    cache::delete(key)
}

pub(crate) fn cache_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, String> {
    cache::increment(key, delta, ttl_ms)
}

pub(crate) fn enqueue(job: FollowUp) -> Result<String, String> {
    wit_enqueue::enqueue(&types::NewJob {
        job_type: job.job_type,
        payload: job.payload,
        priority: job.priority,
        delay_ms: job.delay_ms,
        max_attempts: job.max_attempts,
        unique_key: job.unique_key,
    })
}

pub(crate) fn config_get(name: &str) -> Option<String> {
    config::get(name)
}

#[cfg(feature = "contract-0-2")]
pub(crate) fn secrets_get(name: &str) -> Option<String> {
    crate::bindings::spool::plugin::secrets::get(name)
}
