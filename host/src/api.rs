//! The HTTP API: axum routes under `/api/v1`, `/health` and
//! `/metrics`. Handlers talk to storage only (never to the runtime); what they need to know
//! about plugins comes through the `Catalog` trait, which `app` implements over the registry.
//! `ui.rs` serves the web dashboard at `/`, a client of this same API.

pub mod bulk;
pub mod error;
pub mod flow;
pub mod handlers;
pub mod health;
pub mod routes;
pub mod sse;
pub mod types;
pub mod ui;

use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::storage::Storage;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// What the API may know about plugins (a read-only view of the registry).
pub trait Catalog: Send + Sync + 'static {
    /// Whether a loaded plugin handles `job_type`.
    fn handles(&self, job_type: &str) -> bool;
    /// The `max_attempts` of the plugin handling `job_type`, when its manifest sets one.
    fn max_attempts_for(&self, job_type: &str) -> Option<u32>;
    /// The manifest `timeout` of the plugin handling `job_type`, when it sets one.
    fn timeout_for(&self, job_type: &str) -> Option<std::time::Duration>;
    /// Loaded plugins and failed files, as the API shows them.
    fn plugins(&self) -> serde_json::Value;
    /// (loaded, failed)
    fn counts(&self) -> (u64, u64);
    /// Names of the loaded plugins (their cache namespaces).
    fn loaded_names(&self) -> Vec<String>;
    /// WebAssembly instances running and kept idle, for `/metrics`.
    fn instances(&self) -> crate::metrics::InstanceCounts;
}

/// Everything the handlers share.
pub struct ApiState {
    /// Time for flow-control views, health and job views (the storage's clock).
    pub clock: Arc<dyn crate::job::Clock>,
    pub storage: Arc<dyn Storage>,
    pub catalog: Arc<dyn Catalog>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventHub>,
    pub max_payload: usize,
    /// Attempts of a job whose request and plugin say nothing (config `retry.max_attempts`).
    pub default_max_attempts: u32,
    /// Config `job_timeout`: the longest a job may ask to run when its plugin's manifest
    /// sets no `timeout` (or no loaded plugin handles its type yet).
    pub job_timeout: std::time::Duration,
    /// Config `api_hosts`: names besides IP literals and `localhost` that `Host` may carry.
    pub api_hosts: Vec<String>,
    /// Connection, header and event-stream limits of the HTTP server.
    pub api: crate::config::ApiLimits,
    /// What each plugin's cache may hold (shown by `/health`).
    pub cache_quota: crate::storage::CacheQuota,
    /// Open SSE streams (written by `sse`, one guard per stream).
    pub event_streams: Arc<std::sync::atomic::AtomicUsize>,
    pub api_token: Option<String>,
    pub started: Instant,
    /// Turns true when the daemon begins to shut down: SSE streams end, health says so.
    pub stop: watch::Receiver<bool>,
    /// Tells a job running in this daemon to stop at once (others learn of a cancel at their
    /// next lease renewal). Returns whether the job runs here.
    pub cancel_local: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// Recent storage `info()`/`stats()` answers for `/health` and `/metrics` (~1 s).
    pub probe_cache: health::ProbeCache,
}

pub use routes::{router, serve};
