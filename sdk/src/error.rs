//! `Error`: how a handler says "retry" or "fail", and how other errors turn into one.

use std::fmt;
use std::time::Duration;

/// What the host should do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Try again while attempts remain; `after` overrides the backoff policy's delay.
    Retry {
        /// Wait at least this long before the next attempt (`None`: the job's backoff decides).
        after: Option<Duration>,
    },
    /// Do not try again: the job goes to `failed` (the dead-letter queue) at once.
    Fail,
    /// The service the job calls is rate limiting: hold back every job of this type, on every
    /// daemon, for `after` (the host's default of 1 s when `None`), and run this job again
    /// afterwards without spending an attempt. Contract 0.2; under 0.1 it is a retry after
    /// `after`.
    RateLimited { after: Option<Duration> },
}

/// A handler's error: a message plus whether the job should be retried.
///
/// Build one with [`Error::retry`], [`Error::retry_after`] or [`Error::fail`], or let `?`
/// convert another error:
///
/// - any `std::error::Error` becomes a **retry** (like a trap, the job's retry policy applies),
///   with the error and its sources as the message;
/// - except [`serde_json::Error`] and [`crate::EnqueueError`], which become a **fail**: bad
///   JSON or a malformed follow-up job do not get better by running again;
/// - and `spool_sdk::http::HttpError` (contract 0.2), which retries unless the request can
///   never be sent as written (see its `is_retry`).
///
/// Use [`ResultExt`] to choose the kind and add context yourself.
///
/// `Error` deliberately does not implement `std::error::Error` (like `anyhow::Error`), so that
/// the blanket conversion above can exist.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A transient failure: the host retries the job after its backoff delay.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retry { after: None },
            message: message.into(),
        }
    }

    /// A transient failure: the host retries the job no sooner than `after` from now
    /// (rounded up to whole milliseconds).
    pub fn retry_after(message: impl Into<String>, after: Duration) -> Self {
        Self {
            kind: ErrorKind::Retry { after: Some(after) },
            message: message.into(),
        }
    }

    /// The service this job calls said "too many requests": every job of this type waits
    /// `after` (on every daemon sharing the queue), then this one runs again; no attempt is
    /// spent. Pass the server's `Retry-After` when it sent one.
    pub fn rate_limited(message: impl Into<String>, after: Option<Duration>) -> Self {
        Self {
            kind: ErrorKind::RateLimited { after },
            message: message.into(),
        }
    }

    /// A permanent failure: the job goes to `failed` without further attempts.
    pub fn fail(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Fail,
            message: message.into(),
        }
    }

    /// Whether the job will be retried, and when.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True for [`Error::retry`], [`Error::retry_after`] and [`Error::rate_limited`]: the
    /// job runs again.
    pub fn is_retry(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Retry { .. } | ErrorKind::RateLimited { .. }
        )
    }

    /// The message stored as the job's `error`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix the message with what was being done: `"{context}: {message}"`.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Retry { after: None } => write!(f, "retry: {}", self.message),
            ErrorKind::Retry { after: Some(after) } => {
                write!(f, "retry after {after:?}: {}", self.message)
            }
            ErrorKind::Fail => write!(f, "fail: {}", self.message),
            ErrorKind::RateLimited { after } => {
                write!(f, "rate limited for {after:?}: {}", self.message)
            }
        }
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let message = chain(&error);
        let any: &dyn std::any::Any = &error;
        #[cfg(feature = "contract-0-2")]
        if let Some(http) = any.downcast_ref::<crate::http::HttpError>() {
            // A request that can never be sent as written fails; no response at all retries.
            return if http.is_retry() {
                Error::retry(message)
            } else {
                Error::fail(message)
            };
        }
        if any.is::<serde_json::Error>() || any.is::<crate::EnqueueError>() {
            Error::fail(message)
        } else {
            Error::retry(message)
        }
    }
}

/// `error: source: source ...`, skipping a source whose text the previous message already ends
/// with (many errors repeat their source in their own message).
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let text = next.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = next.source();
    }
    message
}

/// Choose retry or fail for any error and add what was being done.
///
/// ```
/// use spool_sdk::{Error, ResultExt};
///
/// fn parse(n: &str) -> Result<u32, Error> {
///     n.parse::<u32>().or_fail("`n` must be a whole number")
/// }
/// assert_eq!(parse("x").unwrap_err().message(), "`n` must be a whole number: invalid digit found in string");
/// ```
pub trait ResultExt<T> {
    /// Map the error to [`Error::fail`] with message `"{context}: {error}"`.
    fn or_fail(self, context: impl fmt::Display) -> Result<T, Error>;
    /// Map the error to [`Error::retry`] with message `"{context}: {error}"`.
    fn or_retry(self, context: impl fmt::Display) -> Result<T, Error>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn or_fail(self, context: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| Error::fail(format!("{context}: {e}")))
    }

    fn or_retry(self, context: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| Error::retry(format!("{context}: {e}")))
    }
}

impl<T> ResultExt<T> for Option<T> {
    /// Map `None` to [`Error::fail`] with `context` as the message.
    fn or_fail(self, context: impl fmt::Display) -> Result<T, Error> {
        self.ok_or_else(|| Error::fail(context.to_string()))
    }

    /// Map `None` to [`Error::retry`] with `context` as the message.
    fn or_retry(self, context: impl fmt::Display) -> Result<T, Error> {
        self.ok_or_else(|| Error::retry(context.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot reach the thumbnailer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn other_errors_become_retries_with_their_sources() {
        let error: Error = Outer(std::io::Error::other("connection refused")).into();
        assert!(error.is_retry());
        assert_eq!(
            error.message(),
            "cannot reach the thumbnailer: connection refused"
        );
    }

    #[test]
    fn json_errors_become_permanent_failures() {
        let json = serde_json::from_str::<u32>("\"x\"").unwrap_err();
        let error: Error = json.into();
        assert_eq!(error.kind(), ErrorKind::Fail);
    }

    #[test]
    fn retry_after_keeps_its_delay() {
        let error = Error::retry_after("rate limited", Duration::from_secs(3));
        assert_eq!(
            error.kind(),
            ErrorKind::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(format!("{error:?}"), "retry after 3s: rate limited");
    }

    #[test]
    fn context_prefixes_the_message() {
        let error = Error::fail("no such image").context("resizing `a.png`");
        assert_eq!(error.to_string(), "resizing `a.png`: no such image");
    }

    #[test]
    fn missing_options_become_the_chosen_kind() {
        let none: Option<u8> = None;
        assert!(none.or_retry("not ready").unwrap_err().is_retry());
        assert!(!none.or_fail("missing").unwrap_err().is_retry());
    }
}
