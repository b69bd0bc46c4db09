//! A plugin's secrets as the runtime holds them: the values the plugin may read through the
//! `secrets` import, and the redaction of those values from everything the plugin writes that
//! others can read (log lines, progress messages, errors, results, follow-up payloads).
//! Values never appear in `Debug` output.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// What a secret's value is replaced with.
pub const REDACTED: &str = "[redacted]";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: BTreeMap<String, String>,
    /// Each value, and its JSON-escaped form when that differs, longest first (so that a
    /// value containing another is replaced whole).
    patterns: Vec<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Secrets {
    /// Empty values are not secrets (and would match everywhere); the caller refuses them.
    pub fn new(values: BTreeMap<String, String>) -> Secrets {
        let mut patterns: Vec<String> = Vec::new();
        for v in values.values().filter(|v| !v.is_empty()) {
            patterns.push(v.clone());
            let escaped = serde_json::Value::from(v.as_str()).to_string();
            let escaped = &escaped[1..escaped.len() - 1];
            if escaped != v {
                patterns.push(escaped.to_string());
            }
        }
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        patterns.dedup();
        Secrets { values, patterns }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by `[redacted]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.patterns.iter().any(|p| text.contains(p.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for p in &self.patterns {
            if out.contains(p.as_str()) {
                out = out.replace(p.as_str(), REDACTED);
            }
        }
        Cow::Owned(out)
    }

    /// JSON text with secret values redacted inside its strings, keys and numbers; still valid
    /// JSON. Text that holds no secret comes back as it was.
    pub fn redact_json<'a>(&self, json: &'a str) -> Cow<'a, str> {
        if !self.patterns.iter().any(|p| json.contains(p.as_str())) {
            return Cow::Borrowed(json);
        }
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(value) => Cow::Owned(self.redact_value(value).to_string()),
            // Not JSON: the caller reports it as such; redact it as text.
            Err(_) => self.redact(json),
        }
    }

    fn redact_value(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(&s).into_owned()),
            Value::Number(n) => {
                let text = n.to_string();
                match self.redact(&text) {
                    Cow::Borrowed(_) => Value::Number(n),
                    Cow::Owned(s) => Value::String(s),
                }
            }
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact(&k).into_owned(), self.redact_value(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        Secrets::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn values_are_redacted_from_text() {
        let s = secrets(&[("key", "s3cr3t-value"), ("other", "s3cr3t")]);
        assert_eq!(
            s.redact("token=s3cr3t-value and s3cr3t"),
            "token=[redacted] and [redacted]"
        );
        assert!(matches!(s.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_stays_json_and_loses_the_value() {
        let s = secrets(&[("key", "a\"b\\c"), ("pin", "123456")]);
        let json = r#"{"echo": "x a\"b\\c y", "a\"b\\c": 1, "n": 123456, "list": ["123456"]}"#;
        let out = s.redact_json(json);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["echo"], "x [redacted] y");
        assert_eq!(v["[redacted]"], 1);
        assert_eq!(v["n"], "[redacted]");
        assert_eq!(v["list"][0], "[redacted]");
        assert!(!out.contains("123456") && !out.contains("a\\\"b"));
    }

    #[test]
    fn debug_shows_names_only() {
        let s = secrets(&[("api_key", "hunter2hunter2")]);
        let shown = format!("{s:?}");
        assert!(
            shown.contains("api_key") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
