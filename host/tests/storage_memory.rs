//! The storage conformance suite against `memory://`.
//! Run: `cargo test -p spool-host --features testing --test storage_memory`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![cfg(feature = "testing")]

use spool_host::job::ManualClock;
use spool_host::storage::memory::MemoryStorage;
use spool_host::storage::{Storage, conformance};
use std::sync::Arc;

async fn memory_factory(clock: Arc<ManualClock>) -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new(conformance::options(), clock))
}

spool_host::conformance_tests!(memory_factory);
