//! The fake host's outbound HTTP and secrets (contract 0.2): canned responses by method and
//! URL, recorded requests, secret values.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{FakeHost, with};
use crate::sys::{HttpFailure, HttpRequest, HttpResponse};

/// A canned response for [`FakeHost::respond`].
///
/// ```
/// use spool_sdk::testing::FakeResponse;
///
/// let rate_limited = FakeResponse::new(429).header("Retry-After", "2").body("slow down");
/// let created = FakeResponse::new(201).json(&serde_json::json!({"id": 7}));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl FakeResponse {
    /// A response with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Set the body to `value` as JSON, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("a fake response body encodes as JSON");
        self.header("content-type", "application/json").body(body)
    }
}

/// A request the handler sent, as the fake host recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Such as `POST`.
    pub method: String,
    /// The URL as the plugin gave it, without a fragment.
    pub url: String,
    /// In the order added.
    pub headers: Vec<(String, String)>,
    /// The body's bytes.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a registered `(method, url)` answers.
#[derive(Debug, Clone)]
enum Answer {
    Response(FakeResponse),
    Failure(String),
}

#[derive(Debug, Default)]
pub(super) struct State {
    secrets: BTreeMap<String, String>,
    routes: BTreeMap<(String, String), Answer>,
    requests: Vec<RecordedRequest>,
}

impl FakeHost {
    /// Set a secret, as the manifest's `[secrets]` table would.
    pub fn set_secret(&self, name: &str, value: &str) {
        with(|state| state.http.secrets.insert(name.to_owned(), value.to_owned()));
    }

    /// Answer every `method` request to `url` (exactly as the plugin writes it, without a
    /// fragment) with `response`, until another call replaces it. A request nobody registered
    /// gets `HTTP-request-denied`, like a host missing from `allowed_hosts`.
    pub fn respond(&self, method: &str, url: &str, response: FakeResponse) {
        self.route(method, url, Answer::Response(response));
    }

    /// Make every `method` request to `url` fail without a response, with this wasi:http error
    /// code (such as `connection-refused`, `connection-timeout`, `HTTP-response-timeout` or
    /// `HTTP-response-body-size`).
    pub fn fail_request(&self, method: &str, url: &str, code: &str) {
        self.route(method, url, Answer::Failure(code.to_owned()));
    }

    fn route(&self, method: &str, url: &str, answer: Answer) {
        with(|state| {
            state
                .http
                .routes
                .insert((method.to_ascii_uppercase(), url.to_owned()), answer)
        });
    }

    /// Every request sent so far (answered or not), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        with(|state| state.http.requests.clone())
    }
}

pub(crate) fn secrets_get(name: &str) -> Option<String> {
    with(|state| state.http.secrets.get(name).cloned())
}

pub(crate) fn http_send(request: &HttpRequest) -> Result<HttpResponse, HttpFailure> {
    with(|state| {
        state.http.requests.push(RecordedRequest {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        });
        let key = (request.method.to_ascii_uppercase(), request.url.clone());
        match state.http.routes.get(&key) {
            Some(Answer::Response(response)) => Ok(HttpResponse {
                status: response.status,
                headers: response.headers.clone(),
                body: response.body.clone(),
            }),
            Some(Answer::Failure(code)) => Err(HttpFailure {
                code: code.clone(),
                detail: None,
            }),
            None => Err(HttpFailure {
                code: "HTTP-request-denied".to_owned(),
                detail: None,
            }),
        }
    })
}
