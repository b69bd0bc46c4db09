//! The HTTP client the CLI's client commands use: base URL and token from `SPOOL_URL` /
//! `SPOOL_TOKEN`, API errors turned into readable messages, and a plain "no daemon answers"
//! when nothing listens.

use anyhow::Context;
use serde_json::Value;
use std::time::Duration;

pub const DEFAULT_URL: &str = "http://127.0.0.1:7878";

#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// What went wrong talking to a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon answers at {0}: start one with `spool daemon` (or set SPOOL_URL)")]
    NoDaemon(String),
    /// The daemon answered with an error.
    #[error("{message} ({status} {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0:#}")]
    Other(anyhow::Error),
}

/// A successful answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ClientError::Other(anyhow::anyhow!(
                "the daemon sent something that is not JSON: {e}"
            ))
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Client> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            anyhow::bail!("SPOOL_URL must start with http:// (got {base:?})");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// `SPOOL_URL` (default http://127.0.0.1:7878) and `SPOOL_TOKEN`.
    pub fn from_env() -> anyhow::Result<Client> {
        let url = std::env::var("SPOOL_URL").ok().filter(|u| !u.is_empty());
        Client::new(
            url.as_deref().unwrap_or(DEFAULT_URL),
            std::env::var("SPOOL_TOKEN").ok(),
        )
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<Answer, ClientError> {
        let resp = rb.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if status >= 400 {
            return Err(api_error(status, &body));
        }
        Ok(Answer { status, body })
    }

    fn transport_error(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::NoDaemon(self.base.clone())
        } else {
            ClientError::Other(anyhow::anyhow!("request to {} failed: {e}", self.base))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.send(
            self.request(reqwest::Method::GET, path)
                .timeout(Duration::from_secs(60)),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Option<Vec<u8>>) -> Result<Answer, ClientError> {
        let mut rb = self
            .request(reqwest::Method::POST, path)
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        self.send(rb).await
    }

    pub async fn put(&self, path: &str, body: Vec<u8>) -> Result<Answer, ClientError> {
        let rb = self
            .request(reqwest::Method::PUT, path)
            .timeout(Duration::from_secs(60))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(rb).await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.send(
            self.request(reqwest::Method::DELETE, path)
                .timeout(Duration::from_secs(60)),
        )
        .await
    }

    /// Open the SSE stream (no overall timeout); the caller reads `bytes_stream()`.
    pub async fn open_events(
        &self,
        query: &str,
        last_id: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut rb = self
            .request(reqwest::Method::GET, &format!("/api/v1/events{query}"))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_id {
            rb = rb.header("Last-Event-ID", id);
        }
        let resp = rb.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        if status >= 400 {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(api_error(status, &body));
        }
        Ok(resp)
    }
}

fn api_error(status: u16, body: &[u8]) -> ClientError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("http_error");
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    ClientError::Api {
        status,
        code: code.to_string(),
        message,
    }
}

/// Percent-encode one query or path component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One parsed Server-Sent Event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Splits an SSE byte stream into messages (fields `id`, `event`, `data`; comments skipped).
#[derive(Default)]
pub struct SseParser {
    buf: String,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    /// Feed bytes; returns the messages they completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        let mut out = Vec::new();
        while let Some(pos) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=pos).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data || self.current.id.is_some() {
                    out.push(std::mem::take(&mut self.current));
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => self.current.id = Some(value.to_string()),
                "event" => self.current.event = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_handles_split_chunks_and_comments() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keep-alive\n\nid: 1\nevent: job.crea").is_empty());
        let got = p.feed(b"ted\ndata: {\"a\":1}\n\nid: 2\ndata: x\r\n\r\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id.as_deref(), Some("1"));
        assert_eq!(got[0].event.as_deref(), Some("job.created"));
        assert_eq!(got[0].data, "{\"a\":1}");
        assert_eq!(got[1].data, "x");
    }

    #[test]
    fn api_errors_carry_the_daemons_message() {
        let e = api_error(
            404,
            br#"{"error":{"code":"not_found","message":"no job with id `x`"}}"#,
        );
        assert_eq!(e.to_string(), "no job with id `x` (404 not_found)");
        let e = api_error(502, b"bad gateway");
        assert_eq!(e.to_string(), "bad gateway (502 http_error)");
    }

    #[test]
    fn encode_escapes_reserved_characters() {
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode("echo.v1-x_y"), "echo.v1-x_y");
    }
}
