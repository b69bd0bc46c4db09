//! What a handler may return: any `Serialize` value, or [`RawJson`] to pass JSON text through
//! untouched.

use serde::Serialize;

use crate::Error;

/// A handler result: converted to the JSON text the host stores.
///
/// Implemented for every `Serialize` type (encoded with `serde_json`; `()` becomes `null`) and
/// for [`RawJson`] (passed through as is).
pub trait Output {
    /// The result as JSON text.
    fn into_json(self) -> Result<String, Error>;
}

impl<T: Serialize> Output for T {
    fn into_json(self) -> Result<String, Error> {
        serde_json::to_string(&self).map_err(|e| {
            Error::fail(format!(
                "cannot encode the handler's result as JSON: {e}; fix the plugin"
            ))
        })
    }
}

/// JSON text returned without decoding or re-encoding it, so keys keep their order and numbers
/// their spelling (for example a payload echoed back with [`crate::Job::into_raw_payload`]).
///
/// The SDK does not check it: the host validates every result, and text that is not JSON ends
/// the attempt as an invalid result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(String);

impl RawJson {
    /// Wrap JSON text.
    pub fn new(json: impl Into<String>) -> Self {
        Self(json.into())
    }

    /// The wrapped text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Output for RawJson {
    fn into_json(self) -> Result<String, Error> {
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_json_passes_through_untouched() {
        let text = r#"{"b": 1, "a": 1.50}"#;
        assert_eq!(RawJson::new(text).into_json().unwrap(), text);
    }

    #[test]
    fn serialize_values_are_encoded() {
        assert_eq!(vec!["a"].into_json().unwrap(), r#"["a"]"#);
        assert_eq!(().into_json().unwrap(), "null");
    }
}
