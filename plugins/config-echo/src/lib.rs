//! `config-echo` (test fixture): returns manifest config values as a JSON object, `null` for
//! a key the manifest does not set.
//!
//! Payload: `{"keys": ["greeting", "answer"]}` (optional; those two are the default, and its
//! manifest sets both). Result for the default manifest:
//! `{"answer": "42", "greeting": "hello from config-echo.toml"}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use spool_sdk::{Error, Job, config};

#[derive(Deserialize)]
struct Payload {
    #[serde(default = "default_keys")]
    keys: Vec<String>,
}

fn default_keys() -> Vec<String> {
    vec!["greeting".to_owned(), "answer".to_owned()]
}

fn handle(job: Job) -> Result<BTreeMap<String, Option<String>>, Error> {
    let payload: Payload = job.payload()?;
    Ok(payload
        .keys
        .into_iter()
        .map(|key| {
            let value = config::get(&key);
            (key, value)
        })
        .collect())
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing;

    #[test]
    fn returns_the_values_it_is_asked_for() {
        let host = testing::FakeHost::install();
        host.set_config("greeting", "hi");
        let out = testing::call(handle, Job::new("config-echo", "{}")).unwrap();
        assert_eq!(out, r#"{"answer":null,"greeting":"hi"}"#);
        let out = testing::call(handle, Job::new("config-echo", r#"{"keys": ["greeting"]}"#));
        assert_eq!(out.unwrap(), r#"{"greeting":"hi"}"#);
    }
}
