//! The one seam between the safe API and the host: on wasm32 the calls go to the WIT imports
//! (`wasm.rs`); on any other target they go to the in-memory fake host in [`crate::testing`],
//! so the sdk and plugins can be unit-tested natively with `cargo test`.

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::testing::calls::*;

/// A follow-up job as the sys layer passes it on (already serialised and validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FollowUp {
    pub job_type: String,
    pub payload: String,
    pub priority: Option<u8>,
    pub delay_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub unique_key: Option<String>,
}
