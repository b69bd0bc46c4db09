//! `webhook`: POSTs the job's payload to the URL in the manifest's `[config] url`, signed.
//!
//! The body is the payload exactly as submitted (JSON text, not re-encoded), with headers
//!
//! - `Content-Type: application/json`
//! - `X-Spool-Signature: sha256=<hex HMAC-SHA256 of the body>`, keyed with the secret
//!   `signing_key` (the receiver recomputes it over the raw body to check the sender);
//! - `X-Spool-Job-Id` (the same across retries: receivers deduplicate on it) and
//!   `X-Spool-Attempt`.
//!
//! The URL comes from the manifest only, never from the payload: whoever can submit a job
//! must not be able to point the signed request elsewhere (the daemon's `allowed_hosts` also
//! bounds it).
//!
//! Outcome by the receiver's answer: 2xx completes with `{"status": N}`; 429 and 503 retry at
//! the time `Retry-After` gives (seconds or an HTTP-date; the job's backoff without one);
//! other 5xx retry with backoff; 4xx (and redirects, which are not followed) fail for good
//! with the status and the first 200 characters of the body. No answer at all (refused,
//! timed out, host not allowed) retries.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use spool_sdk::{Error, Job, config, http, log, secrets};

/// The result of a delivered webhook.
#[derive(Debug, Serialize)]
struct Delivered {
    status: u16,
}

fn handle(job: Job) -> Result<Delivered, Error> {
    let url = config::require("url")?;
    let key = secrets::require("signing_key")?;
    let body = job.raw_payload();
    let response = http::post(&url)
        .header("Content-Type", "application/json")
        .header("X-Spool-Signature", format!("sha256={}", sign(&key, body)))
        .header("X-Spool-Job-Id", job.id())
        .header("X-Spool-Attempt", job.attempt().to_string())
        .body(body)
        .send()?
        .error_for_status()?;
    log::info!("delivered to {url}: {}", response.status());
    Ok(Delivered {
        status: response.status(),
    })
}

/// Lower-case hex of HMAC-SHA256(key, body).
fn sign(key: &str, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing::{self, FakeHost, FakeResponse};
    use spool_sdk::{ErrorKind, http::parse_retry_after};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const URL: &str = "https://hooks.example.com/in";
    const PAYLOAD: &str = r#"{"order": 42,  "total": 1.50}"#;

    fn host() -> FakeHost {
        let host = FakeHost::install();
        host.set_config("url", URL);
        host.set_secret("signing_key", "k3y");
        host
    }

    fn job() -> Job {
        Job::new("webhook", PAYLOAD)
            .with_id("0190b5c6-job")
            .with_attempt(3)
    }

    #[test]
    fn signs_with_hmac_sha256_in_lower_case_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn posts_the_payload_as_is_with_signature_and_job_headers() {
        let host = host();
        host.respond("POST", URL, FakeResponse::new(200).body("ok"));
        assert_eq!(testing::call(handle, job()).unwrap(), r#"{"status":200}"#);
        let requests = host.requests();
        assert_eq!(requests.len(), 1);
        let sent = &requests[0];
        assert_eq!(
            sent.body_text(),
            PAYLOAD,
            "the payload must not be re-encoded"
        );
        assert_eq!(sent.header("content-type"), Some("application/json"));
        assert_eq!(
            sent.header("x-spool-signature"),
            Some(format!("sha256={}", sign("k3y", PAYLOAD)).as_str())
        );
        assert_eq!(sent.header("x-spool-job-id"), Some("0190b5c6-job"));
        assert_eq!(sent.header("x-spool-attempt"), Some("3"));
    }

    #[test]
    fn the_url_comes_from_the_manifest_not_the_payload() {
        let host = host();
        host.respond("POST", URL, FakeResponse::new(202));
        let payload = r#"{"url": "https://attacker.example/"}"#;
        testing::call(handle, Job::new("webhook", payload)).unwrap();
        assert_eq!(host.requests()[0].url, URL);
    }

    #[test]
    fn any_2xx_completes_with_the_status() {
        let host = host();
        host.respond("POST", URL, FakeResponse::new(204));
        assert_eq!(testing::call(handle, job()).unwrap(), r#"{"status":204}"#);
    }

    #[test]
    fn rate_limits_retry_at_the_time_retry_after_gives() {
        let host = host();
        host.respond(
            "POST",
            URL,
            FakeResponse::new(429).header("Retry-After", "2"),
        );
        let error = testing::call(handle, job()).unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::Retry {
                after: Some(Duration::from_secs(2))
            }
        );

        let in_a_minute = SystemTime::now() + Duration::from_secs(60);
        let date = httpdate::fmt_http_date(in_a_minute);
        host.respond(
            "POST",
            URL,
            FakeResponse::new(503).header("Retry-After", &date),
        );
        let ErrorKind::Retry { after: Some(after) } =
            testing::call(handle, job()).unwrap_err().kind()
        else {
            panic!("a 503 with Retry-After must retry after it");
        };
        assert!(
            (Duration::from_secs(58)..=Duration::from_secs(60)).contains(&after),
            "{after:?}"
        );

        host.respond("POST", URL, FakeResponse::new(503));
        let error = testing::call(handle, job()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Retry { after: None });
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21 07:27:50 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("later", now), None);
    }

    #[test]
    fn other_server_errors_retry_with_backoff() {
        let host = host();
        host.respond("POST", URL, FakeResponse::new(500).body("oops"));
        let error = testing::call(handle, job()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Retry { after: None });
        assert!(error.message().contains("answered 500"), "{error:?}");
    }

    #[test]
    fn client_errors_fail_for_good_with_a_body_excerpt() {
        let host = host();
        let body = format!("{{\"error\": \"{}\"}}", "no such hook ".repeat(30));
        host.respond("POST", URL, FakeResponse::new(404).body(body.clone()));
        let error = testing::call(handle, job()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Fail);
        let excerpt: String = body.chars().take(200).collect();
        assert_eq!(
            error.message(),
            format!("POST {URL} answered 404 Not Found: {excerpt}…")
        );
    }

    #[test]
    fn no_answer_retries_and_names_the_cause() {
        let host = host();
        host.fail_request("POST", URL, "connection-timeout");
        let error = testing::call(handle, job()).unwrap_err();
        assert!(error.is_retry());
        assert!(error.message().contains("connection-timeout"), "{error:?}");

        host.set_config("url", "https://not-allowed.example/");
        let error = testing::call(handle, job()).unwrap_err();
        assert!(error.is_retry());
        assert!(error.message().contains("HTTP-request-denied"), "{error:?}");
    }

    #[test]
    fn missing_settings_fail_and_name_the_key() {
        let host = FakeHost::install();
        let error = testing::call(handle, job()).unwrap_err();
        assert!(!error.is_retry());
        assert!(error.message().contains("`url`"), "{error:?}");
        host.set_config("url", URL);
        let error = testing::call(handle, job()).unwrap_err();
        assert!(!error.is_retry());
        assert!(error.message().contains("`signing_key`"), "{error:?}");
        assert!(host.requests().is_empty());
    }
}
