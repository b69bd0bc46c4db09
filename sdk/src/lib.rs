//! `spool-sdk`: write a Spool job handler in Rust as one function over serde types.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use spool_sdk::{cache, log, progress, Error, Job};
//!
//! #[derive(Deserialize)]
//! struct Greet {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Greeting {
//!     text: String,
//!     times_greeted: i64,
//! }
//!
//! fn handle(job: Job) -> Result<Greeting, Error> {
//!     let greet: Greet = job.payload()?; // a bad payload fails the job permanently
//!     log::info!("greeting {} (attempt {})", greet.name, job.attempt());
//!     progress::report(50, "counting");
//!     let times_greeted = cache::increment(&format!("greeted:{}", greet.name), 1, None)?;
//!     Ok(Greeting { text: format!("hello, {}", greet.name), times_greeted })
//! }
//!
//! spool_sdk::export_handler!(handle);
//! # fn main() {
//! #     let _host = spool_sdk::testing::FakeHost::install();
//! #     let out = spool_sdk::testing::call(handle, Job::new("greet", r#"{"name":"ada"}"#));
//! #     assert_eq!(out.unwrap(), r#"{"text":"hello, ada","times_greeted":1}"#);
//! # }
//! ```
//!
//! Build the plugin crate (`crate-type = ["cdylib"]`, depending on `spool-sdk` only) with
//! `cargo build --target wasm32-wasip2 --release`: the `.wasm` is a component targeting
//! `spool:plugin/handler@0.2.0`, ready to drop into the daemon's plugins folder.
//!
//! ## Contract versions
//!
//! | `spool-sdk` dependency | world | adds |
//! |---|---|---|
//! | default features (`contract-0-2`) | `spool:plugin/handler@0.2.0` | [`http`] (outbound requests to the manifest's `allowed_hosts`), [`secrets`] |
//! | `default-features = false` | `spool:plugin/handler@0.1.0` | nothing: the released 0.1 world, exactly as SDK 0.1 built it |
//!
//! Daemons that link 0.2.0 run both; a daemon that knows only 0.1.0 refuses a 0.2.0
//! component. Build for 0.1.0 only when the plugin needs neither HTTP nor secrets and must
//! load on older daemons. (Cargo unifies features per build: in a workspace, build the 0.1.0
//! plugins in a `cargo build -p ...` of their own.)
//!
//! - The handler returns any `Serialize` value (the SDK encodes it as JSON; `()` is `null`),
//!   a [`RawJson`] (JSON text passed through untouched), or an [`Error`]: [`Error::retry`], [`Error::retry_after`] or [`Error::fail`]. `?` turns
//!   other errors into retries, except bad JSON and refused follow-ups, which fail.
//! - Host services: [`log`], [`progress`] (including [`progress::cancelled`]), [`cache`],
//!   [`enqueue()`] with [`NewJob`], and [`config`] (the manifest's `[config]`); with contract
//!   0.2, [`secrets`] (the manifest's `[secrets]`) and [`http`] (GET/POST with JSON bodies on
//!   wasi:http, errors and statuses mapped to retry or fail).
//! - A panic, an endless loop or running out of memory stops the instance; the host records
//!   the attempt as crashed and its retry policy applies. Each job runs in a fresh instance,
//!   so globals last for one job only.
//! - On targets other than wasm32 the host services are an in-memory fake ([`testing`]), so
//!   handlers can be unit-tested with `cargo test`.

#[doc(hidden)]
pub mod bindings;
pub mod cache;
pub mod config;
mod enqueue;
mod error;
#[cfg(feature = "contract-0-2")]
pub mod http;
mod job;
pub mod log;
mod output;
pub mod progress;
#[cfg(feature = "contract-0-2")]
pub mod secrets;
mod sys;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

use std::time::Duration;

pub use cache::CacheError;
pub use enqueue::{EnqueueError, NewJob, enqueue};
pub use error::{Error, ErrorKind, ResultExt};
pub use job::Job;
pub use output::{Output, RawJson};

/// Export `handler` as the plugin's `handle` function.
///
/// `handler` is any expression callable as `FnOnce(Job) -> Result<T, E>` where `T:`
/// [`Output`] (any `Serialize` type, or [`RawJson`]) and `E: Into<Error>` (a function name or a closure). Use the macro once, in the plugin's
/// `lib.rs`; the crate must be a `cdylib` built for `wasm32-wasip2`.
#[macro_export]
macro_rules! export_handler {
    ($handler:expr $(,)?) => {
        const _: () = {
            struct SpoolHandler;

            impl $crate::__private::bindings::Guest for SpoolHandler {
                fn handle(
                    job: $crate::__private::bindings::Job,
                ) -> ::core::result::Result<
                    ::std::string::String,
                    $crate::__private::bindings::JobError,
                > {
                    $crate::__private::handle(job, $handler)
                }
            }

            $crate::__private::bindings::export!(
                SpoolHandler with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Used by `export_handler!`; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    use crate::bindings::spool::plugin::types::RetryInfo;
    use crate::{Error, ErrorKind, Job};

    /// The glue between the WIT export and the author's handler.
    pub fn handle<F, T, E>(job: bindings::Job, handler: F) -> Result<String, bindings::JobError>
    where
        F: FnOnce(Job) -> Result<T, E>,
        T: crate::Output,
        E: Into<Error>,
    {
        crate::run_handler(handler, Job::from_wit(job)).map_err(|error| match error.kind() {
            ErrorKind::Retry { after } => bindings::JobError::Retry(RetryInfo {
                after_ms: after.map(crate::millis_ceil),
                message: error.message().to_owned(),
            }),
            ErrorKind::Fail => bindings::JobError::Fail(error.message().to_owned()),
            #[cfg(feature = "contract-0-2")]
            ErrorKind::RateLimited { after } => bindings::JobError::RateLimited(RetryInfo {
                after_ms: after.map(crate::millis_ceil),
                message: error.message().to_owned(),
            }),
            // 0.1.0 has no such outcome: the closest is a retry after the same delay.
            #[cfg(not(feature = "contract-0-2"))]
            ErrorKind::RateLimited { after } => bindings::JobError::Retry(RetryInfo {
                after_ms: Some(crate::millis_ceil(
                    after.unwrap_or(std::time::Duration::from_secs(1)),
                )),
                message: error.message().to_owned(),
            }),
        })
    }
}

/// Run the handler and encode its result as JSON text (shared by the export and
/// [`testing::call`]).
pub(crate) fn run_handler<F, T, E>(handler: F, job: Job) -> Result<String, Error>
where
    F: FnOnce(Job) -> Result<T, E>,
    T: Output,
    E: Into<Error>,
{
    handler(job).map_err(Into::into)?.into_json()
}

/// Milliseconds for the host, rounded up so that a short non-zero duration never becomes 0
/// (which would mean "now" for a delay and "already expired" for a TTL).
pub(crate) fn millis_ceil(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn unit_results_encode_as_null() {
        let out = run_handler(|_| Ok::<_, Error>(()), Job::new("x", "{}"));
        assert_eq!(out.unwrap(), "null");
    }

    #[test]
    fn unencodable_results_fail_permanently() {
        let mut map = BTreeMap::new();
        map.insert((1, 2), "tuple keys are not JSON");
        let error = run_handler(|_| Ok::<_, Error>(map), Job::new("x", "{}")).unwrap_err();
        assert!(!error.is_retry());
        assert!(
            error
                .message()
                .starts_with("cannot encode the handler's result as JSON")
        );
    }

    #[test]
    fn handler_errors_convert_into_wit_variants() {
        let job = || bindings::Job {
            id: "1".into(),
            job_type: "x".into(),
            payload: "{}".into(),
            attempt: 1,
            max_attempts: 4,
            priority: 5,
            created_at_ms: 0,
            unique_key: None,
        };
        let retry = __private::handle(job(), |_| {
            Err::<(), _>(Error::retry_after("busy", Duration::from_micros(1)))
        });
        match retry {
            Err(bindings::JobError::Retry(info)) => {
                assert_eq!(info.message, "busy");
                assert_eq!(info.after_ms, Some(1));
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        #[cfg(feature = "contract-0-2")]
        {
            let limited = __private::handle(job(), |_| {
                Err::<(), _>(Error::rate_limited("429", Some(Duration::from_secs(2))))
            });
            match limited {
                Err(bindings::JobError::RateLimited(info)) => {
                    assert_eq!(info.message, "429");
                    assert_eq!(info.after_ms, Some(2000));
                }
                other => panic!("expected rate-limited, got {other:?}"),
            }
        }
        let fail = __private::handle(job(), |_| Err::<(), _>(Error::fail("bad")));
        assert!(matches!(fail, Err(bindings::JobError::Fail(m)) if m == "bad"));
        let ok = __private::handle(job(), |job| Ok::<_, Error>(job.id().to_owned()));
        assert_eq!(ok.unwrap(), "\"1\"");
    }

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(millis_ceil(Duration::ZERO), 0);
        assert_eq!(millis_ceil(Duration::from_nanos(1)), 1);
        assert_eq!(millis_ceil(Duration::from_millis(1500)), 1500);
        assert_eq!(millis_ceil(Duration::MAX), u64::MAX);
    }
}
