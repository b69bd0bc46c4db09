//! `markdown`: renders Markdown to HTML.
//!
//! Payload: `{"markdown": "...", "toc": false, "allow_html": false}`.
//! Result: `{"html": "...", "words": n, "headings": [{"level", "text", "id"}], "cached": bool}`.
//!
//! The rendering is cached in the plugin's cache, keyed by a SHA-256 of the settings and the
//! source, for `cache_ttl_secs` (manifest config, default one day): a repeat is a cache hit and
//! says `"cached": true`. The cache is only an optimisation: when it fails the job still
//! renders and logs a warning.

mod render;

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spool_sdk::{Error, Job, cache, config, log, progress};

use render::{Rendered, Settings};

/// Bump when the output for the same input changes, so old cache entries are not served.
const CACHE_KEY_VERSION: &str = "v1";
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Deserialize)]
struct Payload {
    markdown: String,
    #[serde(default)]
    toc: bool,
    #[serde(default)]
    allow_html: bool,
}

#[derive(Serialize)]
struct Output {
    #[serde(flatten)]
    rendered: Rendered,
    cached: bool,
}

fn handle(job: Job) -> Result<Output, Error> {
    let payload: Payload = job.payload()?;
    let settings = Settings {
        toc: payload.toc,
        allow_html: payload.allow_html,
    };
    let key = cache_key(&payload.markdown, settings);

    progress::report(10, "checking the cache");
    match cache::get_json::<Rendered>(&key) {
        Ok(Some(rendered)) => {
            log::info!("cache hit for {} bytes of markdown", payload.markdown.len());
            progress::report(100, "served from the cache");
            return Ok(Output {
                rendered,
                cached: true,
            });
        }
        Ok(None) => {}
        Err(e) => log::warn!("{e}; rendering without the cache"),
    }

    progress::report(30, "rendering");
    let rendered = render::render(&payload.markdown, settings);
    log::info!(
        "rendered {} bytes of markdown: {} words, {} headings",
        payload.markdown.len(),
        rendered.words,
        rendered.headings.len()
    );

    progress::report(90, "storing in the cache");
    let ttl =
        config::parse::<u64>("cache_ttl_secs")?.map_or(DEFAULT_CACHE_TTL, Duration::from_secs);
    if let Err(e) = cache::set_json(&key, &rendered, Some(ttl)) {
        log::warn!("{e}; the next identical job renders again");
    }
    progress::report(100, "done");
    Ok(Output {
        rendered,
        cached: false,
    })
}

spool_sdk::export_handler!(handle);

/// `md:v1:<sha256 hex of the settings and the source>`.
fn cache_key(markdown: &str, settings: Settings) -> String {
    let mut hasher = Sha256::new();
    hasher.update([u8::from(settings.toc), u8::from(settings.allow_html)]);
    hasher.update(markdown.as_bytes());
    let mut key = format!("md:{CACHE_KEY_VERSION}:");
    for byte in hasher.finalize() {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing::{self, FakeHost};

    fn run(payload: &str) -> serde_json::Value {
        let out = testing::call(handle, Job::new("markdown", payload)).unwrap();
        serde_json::from_str(&out).unwrap()
    }

    #[test]
    fn a_repeat_is_served_from_the_cache() {
        let host = FakeHost::install();
        let first = run(r##"{"markdown": "# Hi\n\nthere"}"##);
        assert_eq!(first["cached"], false);
        assert_eq!(first["html"], "<h1>Hi</h1>\n<p>there</p>\n");
        assert_eq!(first["words"], 2);
        assert_eq!(first["headings"][0]["id"], "hi");
        let second = run(r##"{"markdown": "# Hi\n\nthere"}"##);
        assert_eq!(second["cached"], true);
        assert_eq!(second["html"], first["html"]);
        assert_eq!(host.progress().last().unwrap().0, 100);
    }

    #[test]
    fn settings_are_part_of_the_cache_key() {
        let _host = FakeHost::install();
        run(r##"{"markdown": "# Hi"}"##);
        let with_toc = run(r##"{"markdown": "# Hi", "toc": true}"##);
        assert_eq!(with_toc["cached"], false);
        assert!(
            with_toc["html"]
                .as_str()
                .unwrap()
                .starts_with("<nav class=\"toc\">")
        );
    }

    #[test]
    fn a_cache_outage_still_renders() {
        let host = FakeHost::install();
        host.fail_cache("storage unreachable");
        let out = run(r#"{"markdown": "text"}"#);
        assert_eq!(out["html"], "<p>text</p>\n");
        assert!(
            host.logs()
                .iter()
                .any(|(_, line)| line.contains("storage unreachable"))
        );
    }

    #[test]
    fn a_payload_without_markdown_fails_permanently() {
        let _host = FakeHost::install();
        let error = testing::call(handle, Job::new("markdown", r#"{"md": "x"}"#)).unwrap_err();
        assert!(!error.is_retry());
        assert!(
            error.message().contains("missing field `markdown`"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn cache_ttl_comes_from_the_manifest() {
        let host = FakeHost::install();
        host.set_config("cache_ttl_secs", "60");
        run(r#"{"markdown": "ttl"}"#);
        let key = cache_key("ttl", Settings::default());
        assert_eq!(host.cache_ttl_ms(&key), Some(60_000));
    }
}
