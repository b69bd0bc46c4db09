//! Outbound HTTP through `wasi:http/outgoing-handler@0.2.12` (wasm32, contract 0.2 only), and
//! the one place that turns a wasi:http `error-code` into its WIT name.
//!
//! A request is sent whole and its response read whole: plugins call APIs and webhooks, and
//! the host bounds every response (`max_response_bytes`), so streaming is not worth its API.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

use super::{HttpFailure, HttpRequest, HttpResponse};

/// The most `blocking-write-and-flush` accepts in one call (wasi:io says 4096 bytes).
const WRITE_CHUNK: usize = 4096;
/// How much one read asks for; the host returns what it has, up to this.
const READ_CHUNK: u64 = 64 * 1024;

pub(crate) fn http_send(request: &HttpRequest) -> Result<HttpResponse, HttpFailure> {
    let mut entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
        .collect();
    // The body's length is known: say it, or the request goes out chunked, which some
    // receivers (small webhook endpoints above all) do not accept. The host checks that the
    // body written matches it.
    let has_length = request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    let sends_body =
        !request.body.is_empty() || matches!(request.method.as_str(), "POST" | "PUT" | "PATCH");
    if sends_body && !has_length {
        entries.push((
            "content-length".to_owned(),
            request.body.len().to_string().into_bytes(),
        ));
    }
    let headers = Fields::from_list(&entries).map_err(|e| HttpFailure {
        code: "invalid-request".into(),
        detail: Some(format!("the host refused the request's headers ({e:?})")),
    })?;
    let outgoing = OutgoingRequest::new(headers);
    let refused = |what: &str| HttpFailure {
        code: "invalid-request".into(),
        detail: Some(format!("the host refused the request's {what}")),
    };
    outgoing
        .set_method(&method(&request.method))
        .map_err(|()| refused("method"))?;
    let scheme = if request.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    outgoing
        .set_authority(Some(&request.authority))
        .map_err(|()| refused("host"))?;
    outgoing
        .set_path_with_query(Some(&request.path_with_query))
        .map_err(|()| refused("path"))?;

    // The body handle must be taken before `handle` consumes the request; it is written after,
    // so that a body larger than the host's buffer streams out instead of blocking.
    let body = outgoing
        .body()
        .expect("a new outgoing request's body is taken once");
    let future = outgoing_handler::handle(outgoing, None).map_err(failure)?;
    // A request the host refuses (a host not in allowed_hosts, a limit) closes the body stream
    // and reports why through the response future: its error code wins over the write's.
    let written = write_body(body, &request.body);

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => {
            written?;
            response
        }
        Some(Ok(Err(code))) => return Err(failure(code)),
        // `get` after the pollable is ready returns the response once; neither case can occur.
        Some(Err(())) | None => {
            return Err(HttpFailure {
                code: "internal-error".into(),
                detail: Some("the response future was not ready after it said so".into()),
            });
        }
    };

    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .expect("a new response's body is consumed once");
    let body = read_body(&incoming)?;
    // Trailers are not offered to plugins; finishing the body releases it.
    drop(IncomingBody::finish(incoming));
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), HttpFailure> {
    {
        let stream = body
            .write()
            .expect("an outgoing body's stream is taken once");
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(stream_failure)?;
        }
        // The stream must be dropped before the body is finished.
    }
    OutgoingBody::finish(body, None).map_err(failure)
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, HttpFailure> {
    let stream = incoming
        .stream()
        .expect("an incoming body's stream is taken once");
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(error) => return Err(stream_failure(error)),
        }
    }
}

fn stream_failure(error: StreamError) -> HttpFailure {
    match error {
        StreamError::LastOperationFailed(io) => match wasip2::http::types::http_error_code(&io) {
            Some(code) => failure(code),
            None => HttpFailure {
                code: "internal-error".into(),
                detail: Some(io.to_debug_string()),
            },
        },
        // Reading treats `closed` as the end of the body, so this comes from writing.
        StreamError::Closed => HttpFailure {
            code: "connection-terminated".into(),
            detail: Some("the request body could not be sent".into()),
        },
    }
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

/// The error code by its name in `wasi:http/types@0.2.12` (the names the host's logs use too),
/// with the case's payload, when it has one, as text.
fn failure(code: ErrorCode) -> HttpFailure {
    let (name, detail): (&str, Option<String>) = match code {
        ErrorCode::DnsTimeout => ("DNS-timeout", None),
        ErrorCode::DnsError(p) => (
            "DNS-error",
            p.rcode
                .map(|rcode| format!("rcode {rcode}, info code {:?}", p.info_code)),
        ),
        ErrorCode::DestinationNotFound => ("destination-not-found", None),
        ErrorCode::DestinationUnavailable => ("destination-unavailable", None),
        ErrorCode::DestinationIpProhibited => ("destination-IP-prohibited", None),
        ErrorCode::DestinationIpUnroutable => ("destination-IP-unroutable", None),
        ErrorCode::ConnectionRefused => ("connection-refused", None),
        ErrorCode::ConnectionTerminated => ("connection-terminated", None),
        ErrorCode::ConnectionTimeout => ("connection-timeout", None),
        ErrorCode::ConnectionReadTimeout => ("connection-read-timeout", None),
        ErrorCode::ConnectionWriteTimeout => ("connection-write-timeout", None),
        ErrorCode::ConnectionLimitReached => ("connection-limit-reached", None),
        ErrorCode::TlsProtocolError => ("TLS-protocol-error", None),
        ErrorCode::TlsCertificateError => ("TLS-certificate-error", None),
        ErrorCode::TlsAlertReceived(p) => ("TLS-alert-received", p.alert_message),
        ErrorCode::HttpRequestDenied => ("HTTP-request-denied", None),
        ErrorCode::HttpRequestLengthRequired => ("HTTP-request-length-required", None),
        ErrorCode::HttpRequestBodySize(n) => {
            ("HTTP-request-body-size", n.map(|n| format!("{n} bytes")))
        }
        ErrorCode::HttpRequestMethodInvalid => ("HTTP-request-method-invalid", None),
        ErrorCode::HttpRequestUriInvalid => ("HTTP-request-URI-invalid", None),
        ErrorCode::HttpRequestUriTooLong => ("HTTP-request-URI-too-long", None),
        ErrorCode::HttpRequestHeaderSectionSize(_) => ("HTTP-request-header-section-size", None),
        ErrorCode::HttpRequestHeaderSize(p) => {
            ("HTTP-request-header-size", p.and_then(|p| p.field_name))
        }
        ErrorCode::HttpRequestTrailerSectionSize(_) => ("HTTP-request-trailer-section-size", None),
        ErrorCode::HttpRequestTrailerSize(p) => ("HTTP-request-trailer-size", p.field_name),
        ErrorCode::HttpResponseIncomplete => ("HTTP-response-incomplete", None),
        ErrorCode::HttpResponseHeaderSectionSize(_) => ("HTTP-response-header-section-size", None),
        ErrorCode::HttpResponseHeaderSize(p) => ("HTTP-response-header-size", p.field_name),
        ErrorCode::HttpResponseBodySize(n) => {
            ("HTTP-response-body-size", n.map(|n| format!("{n} bytes")))
        }
        ErrorCode::HttpResponseTrailerSectionSize(_) => {
            ("HTTP-response-trailer-section-size", None)
        }
        ErrorCode::HttpResponseTrailerSize(p) => ("HTTP-response-trailer-size", p.field_name),
        ErrorCode::HttpResponseTransferCoding(c) => ("HTTP-response-transfer-coding", c),
        ErrorCode::HttpResponseContentCoding(c) => ("HTTP-response-content-coding", c),
        ErrorCode::HttpResponseTimeout => ("HTTP-response-timeout", None),
        ErrorCode::HttpUpgradeFailed => ("HTTP-upgrade-failed", None),
        ErrorCode::HttpProtocolError => ("HTTP-protocol-error", None),
        ErrorCode::LoopDetected => ("loop-detected", None),
        ErrorCode::ConfigurationError => ("configuration-error", None),
        ErrorCode::InternalError(message) => ("internal-error", message),
    };
    HttpFailure {
        code: name.to_owned(),
        detail,
    }
}
