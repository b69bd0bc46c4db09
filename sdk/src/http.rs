//! Outbound HTTP (contract 0.2): simple requests with JSON bodies, on the standard
//! `wasi:http/outgoing-handler`. The daemon sends a request only to a host in the plugin's
//! `allowed_hosts`; everything else gets an [`HttpError`] whose code is `HTTP-request-denied`.
//!
//! ```
//! use serde::Deserialize;
//! use spool_sdk::{http, secrets, Error};
//!
//! #[derive(Deserialize)]
//! struct Weather {
//!     temperature: f64,
//! }
//!
//! fn temperature(city: &str) -> Result<f64, Error> {
//!     let weather: Weather = http::get(format!("https://api.example.com/weather/{city}"))
//!         .header("Authorization", format!("Bearer {}", secrets::require("api_token")?))
//!         .send()? // no response (denied, refused, timed out): retry
//!         .error_for_status()? // 2xx passes; 429/503/5xx: retry; 4xx: fail
//!         .json()?;
//!     Ok(weather.temperature)
//! }
//! # let host = spool_sdk::testing::FakeHost::install();
//! # host.set_secret("api_token", "t");
//! # host.respond("GET", "https://api.example.com/weather/oslo",
//! #     spool_sdk::testing::FakeResponse::new(200).json(&serde_json::json!({"temperature": -3.5})));
//! # assert_eq!(temperature("oslo").unwrap(), -3.5);
//! ```
//!
//! - A request is sent whole and its response read whole, within the limits the daemon and the
//!   manifest's `[http]` table set (requests per job, response bytes, timeouts).
//! - [`Request::send`] fails only when there is no response: an [`HttpError`] named by its
//!   wasi:http error code. `?` turns it into a retry, except for a request that can never be
//!   sent (a bad URL or header), which fails.
//! - Any status is a response. [`Response::error_for_status`] turns it into the usual outcome:
//!   2xx passes; 429 and 503 retry after the server's `Retry-After`; other 5xx retry with the
//!   job's backoff; 4xx (and 3xx: the host does not follow redirects) fail for good, with the
//!   status and the start of the body in the message.
//! - Natively (`cargo test`), requests go to [`crate::testing::FakeHost`]: register canned
//!   responses with `FakeHost::respond`; a request nobody registered is denied.

mod error;
mod response;
mod url;

use serde::Serialize;

pub use error::HttpError;
pub use response::{Response, parse_retry_after};

/// A `GET` request to `url` (`http://` or `https://`).
pub fn get(url: impl Into<String>) -> Request {
    Request::new("GET", url)
}

/// A `POST` request to `url`; add a body with [`Request::json`] or [`Request::body`].
pub fn post(url: impl Into<String>) -> Request {
    Request::new("POST", url)
}

/// A `PUT` request to `url`.
pub fn put(url: impl Into<String>) -> Request {
    Request::new("PUT", url)
}

/// A `DELETE` request to `url`.
pub fn delete(url: impl Into<String>) -> Request {
    Request::new("DELETE", url)
}

/// An outbound request, built up and then sent with [`Request::send`].
///
/// Problems found while building it (a body that cannot be encoded) are kept and reported by
/// `send`, so the calls chain without a `?` each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a Request does nothing until it is sent"]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The first problem found while building, reported by `send`.
    invalid: Option<String>,
}

impl Request {
    /// A request with any method (upper case, such as `PATCH`) to `url`.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            invalid: None,
        }
    }

    /// Add a header (names are case-insensitive; adding one twice sends both).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if self.invalid.is_none() {
            self.invalid = check_header(&name, &value).err();
        }
        self.headers.push((name, value));
        self
    }

    /// Send `value` encoded as JSON, with `Content-Type: application/json` unless a
    /// content type was set already.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body;
                self.with_default_content_type("application/json")
            }
            Err(e) => {
                self.invalid
                    .get_or_insert_with(|| format!("cannot encode the body as JSON: {e}"));
                self
            }
        }
    }

    /// Send these bytes as the body, as they are (set `Content-Type` with [`Request::header`]).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The method, such as `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn with_default_content_type(self, value: &str) -> Self {
        if self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            self
        } else {
            self.header("Content-Type", value)
        }
    }

    /// Send the request and read the whole response. Any status is `Ok`: see
    /// [`Response::error_for_status`]. `Err` means there is no response; see [`HttpError`].
    pub fn send(self) -> Result<Response, HttpError> {
        let Request {
            method,
            url,
            headers,
            body,
            invalid,
        } = self;
        let invalid_request =
            |detail: String| HttpError::new(&method, &url, "invalid-request", Some(detail));
        if let Some(problem) = invalid {
            return Err(invalid_request(problem));
        }
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(invalid_request(format!("`{method}` is not an HTTP method")));
        }
        let target = url::split(&url).map_err(invalid_request)?;
        let request = crate::sys::HttpRequest {
            method: method.clone(),
            url: target.url,
            https: target.https,
            authority: target.authority,
            path_with_query: target.path_with_query,
            headers,
            body,
        };
        match crate::sys::http_send(&request) {
            Ok(response) => Ok(Response::new(method, url, response)),
            Err(failure) => Err(HttpError::new(&method, &url, &failure.code, failure.detail)),
        }
    }
}

/// Header names are RFC 9110 tokens; values are visible ASCII, spaces and tabs (no line
/// breaks, which would split the header).
fn check_header(name: &str, value: &str) -> Result<(), String> {
    const TOKEN_SYMBOLS: &[u8] = b"!#$%&'*+-.^_`|~";
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TOKEN_SYMBOLS.contains(&b));
    if !name_ok {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!(
            "the value of header `{name}` holds a line break or NUL"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, FakeResponse};

    #[test]
    fn json_bodies_are_encoded_with_a_content_type() {
        let host = FakeHost::install();
        host.respond(
            "POST",
            "https://api.example.com/items",
            FakeResponse::new(201),
        );
        let response = post("https://api.example.com/items")
            .json(&serde_json::json!({"name": "ada"}))
            .send()
            .unwrap();
        assert_eq!(response.status(), 201);
        let sent = &host.requests()[0];
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.header("content-type"), Some("application/json"));
        assert_eq!(sent.body, br#"{"name":"ada"}"#);
    }

    #[test]
    fn an_explicit_content_type_is_kept() {
        let host = FakeHost::install();
        host.respond("PUT", "http://127.0.0.1:9000/x", FakeResponse::new(204));
        put("http://127.0.0.1:9000/x")
            .header("Content-Type", "application/merge-patch+json")
            .json(&1)
            .send()
            .unwrap();
        let sent = &host.requests()[0];
        let types: Vec<_> = sent
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .collect();
        assert_eq!(types.len(), 1, "{types:?}");
        assert_eq!(
            sent.header("content-type"),
            Some("application/merge-patch+json")
        );
    }

    #[test]
    fn requests_nobody_registered_are_denied_and_retried() {
        let host = FakeHost::install();
        let error = get("https://elsewhere.example.org/").send().unwrap_err();
        assert_eq!(error.code(), "HTTP-request-denied");
        assert!(error.is_retry());
        let message = crate::Error::from(error).message().to_owned();
        assert_eq!(
            message,
            "GET https://elsewhere.example.org/ failed: HTTP-request-denied: the host is not \
             in this plugin's allowed_hosts (add it to `allowed_hosts` in the manifest)"
        );
        assert_eq!(host.requests().len(), 1);
    }

    #[test]
    fn bad_requests_fail_before_anything_is_sent() {
        let host = FakeHost::install();
        let cases = [
            get("ftp://example.com/file"),
            get("https://example.com/").header("Bad Name", "x"),
            get("https://example.com/").header("X-Ok", "a\r\nInjected: 1"),
            Request::new("", "https://example.com/"),
        ];
        for request in cases {
            let error = request.send().unwrap_err();
            assert_eq!(error.code(), "invalid-request", "{error}");
            assert!(!crate::Error::from(error).is_retry());
        }
        assert!(host.requests().is_empty());
    }

    #[test]
    fn connection_errors_are_retried_with_their_code() {
        let host = FakeHost::install();
        host.fail_request("GET", "https://api.example.com/", "connection-refused");
        let error: crate::Error = get("https://api.example.com/").send().unwrap_err().into();
        assert!(error.is_retry());
        assert_eq!(
            error.message(),
            "GET https://api.example.com/ failed: connection-refused: the server refused the \
             connection"
        );
    }
}
