//! [`HttpError`]: a request that got no response, named by its wasi:http error code.

use std::fmt;

/// A request that got no response: refused by the daemon's allow-list or limits, or failed on
/// the way (DNS, connection, TLS, timeout). A response with an error status is not an
/// `HttpError`: see [`super::Response::error_for_status`].
///
/// Converting it into an [`crate::Error`] (with `?`) gives a **retry**: the cause is transient,
/// or (for a denied host) fixed by a manifest change that the daemon's hot reload picks up.
/// The exception is a request that can never be sent as written (a bad URL, method or header:
/// code `invalid-request`, or the host refusing it as such), which **fails**.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    method: String,
    url: String,
    code: String,
    detail: Option<String>,
}

impl HttpError {
    pub(crate) fn new(method: &str, url: &str, code: &str, detail: Option<String>) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            code: code.to_owned(),
            detail,
        }
    }

    /// The wasi:http `error-code` case by its WIT name, such as `HTTP-request-denied`,
    /// `connection-refused`, `connection-timeout` or `HTTP-response-body-size`; or
    /// `invalid-request` when the SDK refused to send the request.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The request's URL as the plugin gave it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request's method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// True when the host refused the request because of the plugin's manifest: a host not in
    /// `allowed_hosts`, or an address it does not allow.
    pub fn is_denied(&self) -> bool {
        matches!(
            self.code.as_str(),
            "HTTP-request-denied" | "destination-IP-prohibited"
        )
    }

    /// True when sending the same request again may work; false for a request that can never
    /// be sent as written.
    pub fn is_retry(&self) -> bool {
        !matches!(
            self.code.as_str(),
            "invalid-request"
                | "HTTP-request-method-invalid"
                | "HTTP-request-URI-invalid"
                | "HTTP-request-URI-too-long"
                | "HTTP-request-header-section-size"
                | "HTTP-request-header-size"
        )
    }

    /// What the code means for a plugin author, with the manifest key to change when there is
    /// one. The host's limits are the manifest's `[http]` table (defaults in the daemon's).
    fn explanation(&self) -> Option<&'static str> {
        Some(match self.code.as_str() {
            "HTTP-request-denied" => {
                "the host is not in this plugin's allowed_hosts (add it to `allowed_hosts` in \
                 the manifest)"
            }
            "destination-IP-prohibited" => {
                "the name resolves to a private, loopback or link-local address, which is \
                 allowed only when `allowed_hosts` names that address literally"
            }
            "DNS-timeout" => "the name lookup timed out",
            "DNS-error" => "the name did not resolve",
            "destination-not-found" => "the host was not found",
            "destination-unavailable" | "destination-IP-unroutable" => "the host cannot be reached",
            "connection-refused" => "the server refused the connection",
            "connection-terminated" => "the connection was closed before the response ended",
            "connection-timeout" => "connecting took longer than `connect_timeout`",
            "HTTP-response-timeout" => "the response did not start within `first_byte_timeout`",
            // Hosts differ on which code a slow first byte gets; name both limits.
            "connection-read-timeout" => {
                "the server sent nothing in time (`first_byte_timeout` or `idle_timeout`)"
            }
            "connection-write-timeout" => "sending the request timed out",
            "connection-limit-reached" => {
                "a request limit was reached (`max_requests` per job or `max_concurrent` per \
                 plugin under [http])"
            }
            "HTTP-response-body-size" => "the response is larger than `max_response_bytes`",
            "TLS-certificate-error" => "the server's certificate is not trusted",
            "TLS-protocol-error" | "TLS-alert-received" => "the TLS handshake failed",
            "HTTP-response-incomplete" => "the response ended early",
            "HTTP-protocol-error" => "the server's answer is not valid HTTP",
            _ => return None,
        })
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code == "invalid-request" {
            write!(f, "cannot send {} {}", self.method, self.url)?;
        } else {
            write!(f, "{} {} failed: {}", self.method, self.url, self.code)?;
            if let Some(explanation) = self.explanation() {
                write!(f, ": {explanation}")?;
            }
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_request_and_the_code() {
        let timeout = HttpError::new("GET", "https://a.example/", "HTTP-response-timeout", None);
        assert_eq!(
            timeout.to_string(),
            "GET https://a.example/ failed: HTTP-response-timeout: the response did not start \
             within `first_byte_timeout`"
        );
        let internal = HttpError::new(
            "GET",
            "https://a.example/",
            "internal-error",
            Some("x".into()),
        );
        assert_eq!(
            internal.to_string(),
            "GET https://a.example/ failed: internal-error: x"
        );
        let bad = HttpError::new("GET", "x", "invalid-request", Some("`x` is bad".into()));
        assert_eq!(bad.to_string(), "cannot send GET x: `x` is bad");
        assert!(!bad.is_retry());
        assert!(!crate::Error::from(bad).is_retry());
    }
}
