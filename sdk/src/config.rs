//! Config values from the plugin's manifest: the `[config]` table of `NAME.toml`.
//!
//! ```toml
//! # plugins/NAME.toml
//! [config]
//! endpoint = "https://example.com/hook"
//! ```

use std::str::FromStr;

use crate::Error;

/// The value of `name`, or `None` when the manifest does not set it.
pub fn get(name: &str) -> Option<String> {
    crate::sys::config_get(name)
}

/// The value of `name`, or `default` when the manifest does not set it.
pub fn get_or(name: &str, default: &str) -> String {
    get(name).unwrap_or_else(|| default.to_owned())
}

/// The value of `name`; a permanent [`Error::fail`] naming the key when it is missing.
pub fn require(name: &str) -> Result<String, Error> {
    get(name).ok_or_else(|| {
        Error::fail(format!(
            "config value `{name}` is not set; add it under [config] in the plugin's manifest"
        ))
    })
}

/// The value of `name` parsed as `T` (`None` when it is missing); a value that does not parse
/// is a permanent [`Error::fail`] naming the key and the value.
pub fn parse<T>(name: &str) -> Result<Option<T>, Error>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    get(name)
        .map(|text| {
            text.parse().map_err(|e| {
                Error::fail(format!(
                    "config value `{name}` is invalid (got {text:?}): {e}"
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn values_come_from_the_manifest_config() {
        let host = FakeHost::install();
        host.set_config("version", "v2");
        assert_eq!(get("version").as_deref(), Some("v2"));
        assert_eq!(get_or("missing", "v1"), "v1");
        assert!(!require("missing").unwrap_err().is_retry());
    }

    #[test]
    fn parse_names_the_key_of_a_bad_value() {
        let host = FakeHost::install();
        host.set_config("limit", "lots");
        let error = parse::<u32>("limit").unwrap_err();
        assert_eq!(
            error.message(),
            "config value `limit` is invalid (got \"lots\"): invalid digit found in string"
        );
        assert_eq!(parse::<u32>("other").unwrap(), None);
    }
}
