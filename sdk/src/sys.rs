//! The one seam between the safe API and the host: on wasm32 the calls go to the WIT imports
//! (`wasm.rs`, and `wasm_http.rs` for wasi:http); on any other target they go to the in-memory fake host in [`crate::testing`],
//! so the sdk and plugins can be unit-tested natively with `cargo test`.

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;
#[cfg(all(target_arch = "wasm32", feature = "contract-0-2"))]
mod wasm_http;
#[cfg(all(target_arch = "wasm32", feature = "contract-0-2"))]
pub(crate) use wasm_http::http_send;

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

/// An outbound request as the sys layer sends it: the URL already split and checked by
/// [`crate::http`].
#[cfg(feature = "contract-0-2")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpRequest {
    pub method: String,
    /// The URL as the plugin wrote it (without a fragment): what the fake host matches on.
    pub url: String,
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// `/path?query`, at least `/`.
    pub path_with_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response as the sys layer returns it: the whole body read.
#[cfg(feature = "contract-0-2")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request got no response: a wasi:http `error-code` case by its WIT name (for example
/// `HTTP-request-denied`), with the case's payload as text when it has one.
#[cfg(feature = "contract-0-2")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpFailure {
    pub code: String,
    pub detail: Option<String>,
}
