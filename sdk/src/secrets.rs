//! Secrets from the plugin's manifest: the `[secrets]` table of `NAME.toml` (contract 0.2).
//!
//! ```toml
//! # plugins/NAME.toml
//! [secrets]
//! api_token = "env:EXAMPLE_API_TOKEN"      # read by the daemon from its environment
//! signing_key = "file:/run/secrets/hook"   # or from a file (re-read when it changes)
//! ```
//!
//! ```
//! use spool_sdk::{secrets, Error};
//!
//! fn authorization() -> Result<String, Error> {
//!     Ok(format!("Bearer {}", secrets::require("api_token")?))
//! }
//! # let host = spool_sdk::testing::FakeHost::install();
//! # host.set_secret("api_token", "t0k3n");
//! # assert_eq!(authorization().unwrap(), "Bearer t0k3n");
//! ```
//!
//! The daemon reads the sources when it loads the plugin (a missing one keeps the plugin from
//! loading), and removes secret values from everything the plugin writes that others can
//! read: log lines, progress messages, errors and results. Pass them on only in outbound
//! requests ([`crate::http`]).

use crate::Error;

/// The value of the secret `name`, or `None` when the manifest names no such secret.
pub fn get(name: &str) -> Option<String> {
    crate::sys::secrets_get(name)
}

/// The value of the secret `name`; a permanent [`Error::fail`] naming it when the manifest
/// does not list it (running the job again would not help).
pub fn require(name: &str) -> Result<String, Error> {
    get(name).ok_or_else(|| {
        Error::fail(format!(
            "secret `{name}` is not set; add it under [secrets] in the plugin's manifest \
             (for example `{name} = \"env:VARIABLE\"`)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn values_come_from_the_manifest_secrets() {
        let host = FakeHost::install();
        host.set_secret("token", "s3cret");
        assert_eq!(get("token").as_deref(), Some("s3cret"));
        assert_eq!(get("other"), None);
        let error = require("other").unwrap_err();
        assert!(!error.is_retry());
        assert!(error.message().starts_with("secret `other` is not set"));
    }
}
