//! `{{name}}`: a Spool job handler.
//!
//! Payload: `{"name": "ada"}`. Result: `{"greeting": "hello, ada", "times_greeted": 1}`.
//! It shows the host imports: `log`, `progress`, `cache` (a counter per name) and `config`
//! (`greeting` from `{{name}}.toml`), and the two kinds of error: a bad payload fails the
//! job for good; a cache outage asks for a retry.
//!
//! Built for contract `spool:plugin/handler@0.2.0` (the SDK's default features), so it may
//! also call other services and read secrets, once `{{name}}.toml` lists them:
//!
//! ```ignore
//! let reply: serde_json::Value = spool_sdk::http::post("https://api.example.com/greetings")
//!     .header("Authorization", format!("Bearer {}", spool_sdk::secrets::require("api_token")?))
//!     .json(&serde_json::json!({ "name": payload.name }))
//!     .send()?              // no response (host not allowed, refused, timed out): retry
//!     .error_for_status()? // 429/503 retry after Retry-After, 5xx retry, 4xx fail
//!     .json()?;
//! ```

use serde::{Deserialize, Serialize};
use spool_sdk::{Error, Job, cache, config, log, progress};

#[derive(Deserialize)]
struct Payload {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
    times_greeted: i64,
}

fn handle(job: Job) -> Result<Greeting, Error> {
    // A payload that does not match `Payload` fails the job permanently.
    let payload: Payload = job.payload()?;
    log::info!("greeting {} (attempt {})", payload.name, job.attempt());
    progress::report(50, "counting");

    let times_greeted = cache::increment(&format!("greeted:{}", payload.name), 1, None)
        .map_err(|e| Error::retry(format!("the cache is unavailable: {e}")))?;
    let greeting = config::get_or("greeting", "hello");

    progress::report(100, "done");
    Ok(Greeting {
        greeting: format!("{greeting}, {}", payload.name),
        times_greeted,
    })
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing::{self, FakeHost};

    #[test]
    fn greets_and_counts() {
        let host = FakeHost::install();
        host.set_config("greeting", "hi");
        let first = testing::call(handle, Job::new("{{name}}", r#"{"name": "ada"}"#)).unwrap();
        assert_eq!(first, r#"{"greeting":"hi, ada","times_greeted":1}"#);
        let second = testing::call(handle, Job::new("{{name}}", r#"{"name": "ada"}"#)).unwrap();
        assert_eq!(second, r#"{"greeting":"hi, ada","times_greeted":2}"#);
    }

    #[test]
    fn a_payload_without_a_name_fails_for_good() {
        let _host = FakeHost::install();
        let error = testing::call(handle, Job::new("{{name}}", "{}")).unwrap_err();
        assert!(!error.is_retry());
    }
}
