//! Redis storage against real `redis-server`s that the tests start on free loopback ports
//! (`spool_tests::redis`), one module per deployment: a standalone server, a Cluster, a
//! Sentinel set, and all three over TLS. Each runs the storage conformance suite (one test per
//! case, e.g. `cluster::conformance::claim_orders_by_priority_then_ready_time_then_id`) and
//! what only that deployment has. Without `redis-server` the tests print a loud skip message
//! and pass; under `CI=true` they fail.
//!
//! Run: `cargo test -p spool-host --features testing --test storage_redis`; one deployment:
//! add `-- standalone::`, `cluster::`, `sentinel::` or `tls::`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cluster;
mod sentinel;
mod standalone;
mod tls;

use spool_host::storage::Storage;
use std::sync::Arc;

/// A store under test.
type Backend = Arc<dyn Storage>;
