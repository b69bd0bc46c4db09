//! The connector behind an admitted request: take a concurrency permit, resolve the name,
//! refuse internal addresses (unless the allow-list wrote the address), connect to an address
//! that passed, TLS for https, one HTTP/1.1 exchange, and a response body that enforces the
//! size and idle limits. Every failure becomes a WASI error code for the guest and a line in
//! the job's log; none reaches the job's outcome or the daemon.

use super::address::forbidden;
use super::{Admitted, HttpLimits, HttpPolicy, effective, note};
use crate::runtime::host_api::{JobLog, LogLevel};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
);

pub(super) async fn send(
    policy: Arc<HttpPolicy>,
    log: Arc<Mutex<JobLog>>,
    admitted: Admitted,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Sent, HttpError> {
    let limits = effective(policy.limits, options);
    let start = Instant::now();
    let host = admitted.to.authority();
    let fail = |status: &str, level: LogLevel, text: String, error: HttpError| {
        policy.finished(&host, status, start.elapsed());
        note(&log, level, &format!("{} failed: {text}", admitted.url));
        error
    };

    // Waiting for a slot counts against the connect timeout: a request that cannot start in
    // that time would not have connected in it either.
    let permit = match tokio::time::timeout(
        limits.connect_timeout,
        policy.in_flight.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        _ => {
            policy.denied("max_concurrent");
            note(
                &log,
                LogLevel::Warn,
                &format!(
                    "refused {}: {} requests of this plugin were already in flight for {}, \
                     the limit `http.max_concurrent`",
                    admitted.url,
                    limits.max_concurrent,
                    humantime::format_duration(limits.connect_timeout)
                ),
            );
            return Err(HttpError::ConnectionLimitReached);
        }
    };

    let addresses = match resolve(&admitted, limits.connect_timeout).await {
        Ok(a) => a,
        Err((kind, text, error)) => return Err(fail(kind, LogLevel::Warn, text, error)),
    };
    let addresses = match screen(addresses, admitted.literal) {
        Ok(a) => a,
        Err((ip, why)) => {
            policy.denied("private_address");
            note(
                &log,
                LogLevel::Warn,
                &format!(
                    "refused {}: `{}` resolves to {ip}, {why}; only an `allowed_hosts` entry \
                     that writes the address itself (such as \"{}://{}\") reaches it",
                    admitted.url,
                    admitted.to.host,
                    admitted.to.scheme.as_str(),
                    SocketAddr::new(ip, admitted.to.port),
                ),
            );
            return Err(HttpError::DestinationIpProhibited);
        }
    };

    let deadline = tokio::time::Instant::now() + limits.connect_timeout;
    let tcp = match tokio::time::timeout_at(deadline, connect(&addresses)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(fail(
                "connect_error",
                LogLevel::Warn,
                format!("cannot connect to {host}: {e}"),
                HttpError::ConnectionRefused,
            ));
        }
        Err(_) => {
            return Err(fail(
                "connect_timeout",
                LogLevel::Warn,
                format!(
                    "no connection to {host} within {}, the limit `http.connect_timeout`",
                    humantime::format_duration(limits.connect_timeout)
                ),
                HttpError::ConnectionTimeout,
            ));
        }
    };
    let _ = tcp.set_nodelay(true);

    let exchange = async {
        let stream: Box<dyn Stream> = match admitted.to.scheme {
            super::Scheme::Http => Box::new(tcp),
            super::Scheme::Https => {
                let config = policy
                    .tls
                    .client_config()
                    .map_err(|e| ("tls_error", e, HttpError::TlsProtocolError))?;
                let name = server_name(&admitted.to.host)
                    .map_err(|e| ("tls_error", e, HttpError::TlsProtocolError))?;
                let tls = tokio_rustls::TlsConnector::from(config);
                let stream = tokio::time::timeout_at(deadline, tls.connect(name, tcp))
                    .await
                    .map_err(|_| {
                        (
                            "connect_timeout",
                            format!(
                                "the TLS handshake with {host} did not finish within {}, the \
                                 limit `http.connect_timeout`",
                                humantime::format_duration(limits.connect_timeout)
                            ),
                            HttpError::ConnectionTimeout,
                        )
                    })?
                    .map_err(|e| {
                        (
                            "tls_error",
                            format!("TLS with {host} failed: {e}"),
                            HttpError::TlsCertificateError,
                        )
                    })?;
                Box::new(stream)
            }
        };
        hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                (
                    "protocol_error",
                    format!("HTTP handshake with {host} failed: {e}"),
                    HttpError::HttpProtocolError,
                )
            })
    };
    let (mut sender, connection) = match exchange.await {
        Ok(pair) => pair,
        Err((kind, text, error)) => return Err(fail(kind, LogLevel::Warn, text, error)),
    };
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));

    // On the wire an HTTP/1.1 request names only the path; the host goes in `Host`.
    let (mut parts, body) = request.into_parts();
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) => pq
            .as_str()
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/")),
        None => http::Uri::from_static("/"),
    };
    let request = http::Request::from_parts(parts, body);

    let response =
        match tokio::time::timeout(limits.first_byte_timeout, sender.send_request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(fail(
                    "protocol_error",
                    LogLevel::Warn,
                    format!("{host} did not answer properly: {e}"),
                    HttpError::from(e),
                ));
            }
            Err(_) => {
                return Err(fail(
                    "first_byte_timeout",
                    LogLevel::Warn,
                    format!(
                        "{host} sent no response within {}, the limit `http.first_byte_timeout`",
                        humantime::format_duration(limits.first_byte_timeout)
                    ),
                    HttpError::ConnectionReadTimeout,
                ));
            }
        };
    let status = response.status();
    policy.finished(&host, status.as_str(), start.elapsed());

    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limits.max_response_bytes
    {
        note(
            &log,
            LogLevel::Warn,
            &format!(
                "{} failed: the response declares {len} bytes, over the limit \
                 `http.max_response_bytes` ({} bytes)",
                admitted.url, limits.max_response_bytes
            ),
        );
        return Err(HttpError::HttpResponseBodySize(Some(len)));
    }

    let response = response.map(|incoming| {
        LimitedBody {
            incoming,
            left: limits.max_response_bytes,
            limits,
            idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            held: Some((permit, connection)),
            log: log.clone(),
            url: admitted.url.clone(),
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

/// The addresses of the destination: the written address, or what the name resolves to.
async fn resolve(
    admitted: &Admitted,
    within: Duration,
) -> Result<Vec<SocketAddr>, (&'static str, String, HttpError)> {
    let to = &admitted.to;
    if let Some(ip) = to.address() {
        return Ok(vec![SocketAddr::new(ip, to.port)]);
    }
    match tokio::time::timeout(within, tokio::net::lookup_host((to.host.as_str(), to.port))).await {
        Ok(Ok(found)) => {
            let found: Vec<SocketAddr> = found.collect();
            if found.is_empty() {
                Err((
                    "dns_error",
                    format!("`{}` has no address", to.host),
                    HttpError::DestinationNotFound,
                ))
            } else {
                Ok(found)
            }
        }
        Ok(Err(e)) => Err((
            "dns_error",
            format!("cannot resolve `{}`: {e}", to.host),
            HttpError::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            },
        )),
        Err(_) => Err((
            "dns_timeout",
            format!(
                "resolving `{}` took longer than {}, the limit `http.connect_timeout`",
                to.host,
                humantime::format_duration(within)
            ),
            HttpError::DnsTimeout,
        )),
    }
}

/// The addresses a request may connect to. When the name resolves to a mix, the public ones
/// are used; when only to internal ones, the request is refused (naming the first).
fn screen(
    addresses: Vec<SocketAddr>,
    literal: bool,
) -> Result<Vec<SocketAddr>, (IpAddr, &'static str)> {
    if literal {
        return Ok(addresses);
    }
    let mut refused = None;
    let open: Vec<SocketAddr> = addresses
        .into_iter()
        .filter(|a| match forbidden(a.ip()) {
            Some(why) => {
                refused.get_or_insert((a.ip(), why));
                false
            }
            None => true,
        })
        .collect();
    match (open.is_empty(), refused) {
        (true, Some(r)) => Err(r),
        _ => Ok(open),
    }
}

/// Try each address in turn; the caller bounds the whole by the connect timeout.
async fn connect(addresses: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in addresses {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
}

fn server_name(host: &str) -> Result<rustls_pki_types::ServerName<'static>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(rustls_pki_types::ServerName::from(ip));
    }
    rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("`{host}` is not a valid TLS server name: {e}"))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// Stops the connection task when the response (or its body) is dropped, so that a guest
/// that walks away from a body does not leave a socket open.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The response body as the guest reads it: at most `max_response_bytes`, and an error when
/// the server pauses longer than `idle_timeout`. Holds the concurrency permit and the
/// connection until the body ends or is dropped.
struct LimitedBody {
    incoming: hyper::body::Incoming,
    left: u64,
    limits: HttpLimits,
    idle: Pin<Box<tokio::time::Sleep>>,
    held: Option<(OwnedSemaphorePermit, AbortOnDrop)>,
    log: Arc<Mutex<JobLog>>,
    url: String,
}

impl LimitedBody {
    fn end(&mut self, level: LogLevel, text: Option<String>) {
        self.held = None;
        if let Some(text) = text {
            note(&self.log, level, &format!("{} failed: {text}", self.url));
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.held.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                this.end(LogLevel::Info, None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(LogLevel::Warn, Some(format!("reading the response: {e}")));
                Poll::Ready(Some(Err(HttpError::from(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                if size > this.left {
                    let max = this.limits.max_response_bytes;
                    this.end(
                        LogLevel::Warn,
                        Some(format!(
                            "the response body is over {max} bytes, the limit \
                             `http.max_response_bytes`"
                        )),
                    );
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(max)))));
                }
                this.left -= size;
                let next = tokio::time::Instant::now() + this.limits.idle_timeout;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let idle = this.limits.idle_timeout;
                    this.end(
                        LogLevel::Warn,
                        Some(format!(
                            "the server sent nothing for {}, the limit `http.idle_timeout`",
                            humantime::format_duration(idle)
                        )),
                    );
                    Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_resolve_inside_are_refused_unless_written_literally() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let inside = vec![a("127.0.0.1:80"), a("[::1]:80")];
        assert!(screen(inside.clone(), false).is_err());
        assert_eq!(screen(inside.clone(), true).unwrap(), inside);
        let mixed = vec![a("10.0.0.1:80"), a("93.184.216.34:80")];
        assert_eq!(screen(mixed, false).unwrap(), vec![a("93.184.216.34:80")]);
    }
}
