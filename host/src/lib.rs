//! Spool host library: everything the `spool` binary is made of. `main.rs` stays thin.
//!
//! Data flows one way: `api -> storage`; `scheduler -> storage (claim) -> runtime
//! (execute) -> storage (complete)`; `plugins::watcher -> plugins::registry`, read by the
//! scheduler and the runtime.

pub mod api;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cron;
pub mod events;
pub mod job;
pub mod metrics;
pub mod plugins;
pub mod runtime;
pub mod scheduler;
pub mod service;
pub mod storage;
pub mod text;
pub mod throughput;
pub mod units;
