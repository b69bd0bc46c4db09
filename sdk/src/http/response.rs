//! [`Response`]: status, headers and body of an answered request, and the usual mapping of a
//! status to a job outcome (including `Retry-After`).

use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use crate::Error;

/// How much of an error response's body goes into the job's error message (in characters).
const EXCERPT_CHARS: usize = 200;

/// An answered request: the status, the headers and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    method: String,
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    pub(crate) fn new(method: String, url: String, response: crate::sys::HttpResponse) -> Self {
        Self {
            method,
            url,
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }

    /// The status code, such as 200.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header, in the order received (names as the host gives them, lower case).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body's bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, taken.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as text; bytes that are not UTF-8 become U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON; a body that does not decode is a permanent
    /// [`Error::fail`] naming the request (use `.or_retry` on the result to choose otherwise).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::fail(format!(
                "the response of {} {} is not the JSON expected: {e}",
                self.method, self.url
            ))
        })
    }

    /// The delay the server asks for in `Retry-After` (seconds or an HTTP-date), from now.
    pub fn retry_after(&self) -> Option<Duration> {
        parse_retry_after(self.header("retry-after")?, SystemTime::now())
    }

    /// The response when its status is 2xx, otherwise the job outcome its status calls for:
    ///
    /// | status | outcome |
    /// |---|---|
    /// | 2xx | `Ok(self)` |
    /// | 429, 503 | [`Error::retry_after`] the `Retry-After` delay; [`Error::retry`] (the job's backoff) without one |
    /// | other 5xx | [`Error::retry`]: the job's backoff decides when |
    /// | 4xx, 1xx, 3xx | [`Error::fail`]: the request will not get better (the host does not follow redirects) |
    ///
    /// Error messages name the request and the status and end with the start of the body
    /// (200 characters), such as `POST https://example.com/hook answered 404 Not Found:
    /// no such hook`.
    pub fn error_for_status(self) -> Result<Self, Error> {
        match self.status {
            200..=299 => Ok(self),
            429 | 503 => {
                let message = self.status_message();
                Err(match self.retry_after() {
                    Some(after) => Error::retry_after(message, after),
                    None => Error::retry(message),
                })
            }
            500..=599 => Err(Error::retry(self.status_message())),
            300..=399 => {
                let location = self
                    .header("location")
                    .map(|to| format!(" to {to}"))
                    .unwrap_or_default();
                Err(Error::fail(format!(
                    "{} (a redirect{location}: redirects are not followed; request the final \
                     URL instead)",
                    self.status_message()
                )))
            }
            _ => Err(Error::fail(self.status_message())),
        }
    }

    /// `METHOD URL answered STATUS REASON: body excerpt`.
    fn status_message(&self) -> String {
        let reason = reason_phrase(self.status)
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        format!(
            "{} {} answered {}{reason}: {}",
            self.method,
            self.url,
            self.status,
            excerpt(&self.body)
        )
    }
}

/// The first [`EXCERPT_CHARS`] characters of a body, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Reason phrases of the statuses a plugin is likely to meet (wasi:http does not pass the
/// server's own).
fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// The delay a `Retry-After` value asks for, counted from `now`: a whole number of seconds
/// (`120`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, also the two obsolete formats).
/// A date in the past is a zero delay; a value that is neither is `None`.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use spool_sdk::http::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
/// assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
/// assert_eq!(
///     parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
///     Some(Duration::from_secs(10))
/// );
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly many digits saturate rather than being ignored.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::time::UNIX_EPOCH;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response::new(
            "POST".into(),
            "https://hooks.example.com/in".into(),
            crate::sys::HttpResponse {
                status,
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: body.as_bytes().to_vec(),
            },
        )
    }

    #[test]
    fn success_passes_the_response_through() {
        let ok = response(204, &[], "").error_for_status().unwrap();
        assert_eq!(ok.status(), 204);
    }

    #[test]
    fn rate_limits_retry_after_the_servers_delay() {
        let error = response(429, &[("Retry-After", "2")], "slow down")
            .error_for_status()
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::Retry {
                after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            error.message(),
            "POST https://hooks.example.com/in answered 429 Too Many Requests: slow down"
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let error = response(503, &[("retry-after", &later)], "")
            .error_for_status()
            .unwrap_err();
        let ErrorKind::Retry { after: Some(after) } = error.kind() else {
            panic!("expected a retry with a delay, got {error:?}");
        };
        assert!(
            (Duration::from_secs(118)..=Duration::from_secs(120)).contains(&after),
            "{after:?}"
        );
        let no_header = response(503, &[], "").error_for_status().unwrap_err();
        assert_eq!(no_header.kind(), ErrorKind::Retry { after: None });
    }

    #[test]
    fn server_errors_retry_with_backoff() {
        let error = response(502, &[("Retry-After", "5")], "<html>bad gateway</html>")
            .error_for_status()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Retry { after: None });
    }

    #[test]
    fn client_errors_fail_with_a_body_excerpt() {
        let body = format!("{}{}", "x".repeat(199), "yz and more");
        let error = response(422, &[], &body).error_for_status().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Fail);
        let expected = format!(
            "POST https://hooks.example.com/in answered 422 Unprocessable Content: {}y…",
            "x".repeat(199)
        );
        assert_eq!(error.message(), expected);
        let empty = response(404, &[], " \n").error_for_status().unwrap_err();
        assert!(empty.message().ends_with("404 Not Found: (empty body)"));
    }

    #[test]
    fn redirects_fail_and_say_where_they_pointed() {
        let error = response(301, &[("Location", "https://new.example.com/in")], "")
            .error_for_status()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Fail);
        assert!(
            error
                .message()
                .contains("a redirect to https://new.example.com/in"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "tomorrow"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn json_bodies_decode_or_fail() {
        let ok = response(200, &[], r#"{"a": 1}"#);
        assert_eq!(ok.json::<serde_json::Value>().unwrap()["a"], 1);
        let error = response(200, &[], "<html>").json::<u8>().unwrap_err();
        assert!(!error.is_retry());
    }
}
