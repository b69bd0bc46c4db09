//! The route table, the bearer-token check, body limits, the cross-site guard, and `serve`
//! (bind, the connection cap and header timeout, graceful shutdown).

use super::ApiState;
use super::error::ApiError;
use super::{bulk, flow, handlers, health, sse, ui};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Room for the JSON around a payload (type, priority, keys...).
const ENVELOPE_SLACK: usize = 64 * 1024;
/// Batches carry many payloads; each is still checked against `max_payload`.
const MIN_BATCH_BODY: usize = 32 * 1024 * 1024;

pub fn router(state: Arc<ApiState>) -> Router {
    let single = state.max_payload + ENVELOPE_SLACK;
    let batch = MIN_BATCH_BODY.max(single);
    let api = Router::new()
        .route(
            "/jobs",
            post(handlers::submit)
                .get(handlers::list_jobs)
                .layer(DefaultBodyLimit::max(single)),
        )
        .route(
            "/jobs/batch",
            post(handlers::submit_batch).layer(DefaultBodyLimit::max(batch)),
        )
        .route(
            "/jobs/{id}",
            get(handlers::get_job).delete(handlers::delete_job),
        )
        .route("/jobs/bulk", post(bulk::bulk))
        .route("/jobs/{id}/retry", post(handlers::retry_job))
        .route("/jobs/{id}/cancel", post(handlers::cancel_job))
        .route("/stats", get(handlers::stats))
        .route("/stats/throughput", get(handlers::throughput))
        .route("/plugins", get(handlers::plugins))
        .route("/types", get(flow::list))
        .route("/types/{type}/pause", post(flow::pause))
        .route("/types/{type}/resume", post(flow::resume))
        .route("/types/{type}", get(flow::get_type).put(flow::put_type))
        .route("/schedules", get(flow::schedules).post(flow::put_schedule))
        .route(
            "/schedules/{name}",
            axum::routing::delete(flow::delete_schedule),
        )
        .route("/schedules/{name}/pause", post(flow::pause_schedule))
        .route("/schedules/{name}/resume", post(flow::resume_schedule))
        .route("/events", get(sse::events))
        .fallback(api_not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{*name}", get(ui::asset))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard_origin))
        .with_state(state)
}

/// Without a token, any web page a user opens could otherwise drive the loopback API
/// (cross-site requests, DNS rebinding). Three checks, for every route (the dashboard's page included):
/// - `Host` must be an IP literal, `localhost` (or `*.localhost`) or a name in `api_hosts`:
///   a DNS-rebinding page reaches the daemon under its own name, which this refuses;
/// - `Origin`, when sent, must be the daemon's own (`http://` + the `Host` asked for): a
///   page the daemon serves passes, any other site's page (or `null`) is refused;
/// - a request with a body must say `Content-Type: application/json`: a cross-site
///   `text/plain` or form POST needs no preflight, a JSON one does.
async fn guard_origin(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    match check_request(&state.api_hosts, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check_request(api_hosts: &[String], req: &Request) -> Result<(), ApiError> {
    use axum::http::header;
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host
        && !host_allowed(api_hosts, host)
    {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "forbidden_host",
            format!(
                "this daemon does not answer to the name `{}`: use its address (or \
                 localhost), or add the name to `api_hosts` (SPOOL_API_HOSTS)",
                host.escape_debug()
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = host.map(|h| format!("http://{h}"));
        let same = origin.to_str().ok().is_some_and(|o| {
            own.as_deref()
                .is_some_and(|own| o.eq_ignore_ascii_case(own))
        });
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "requests from another site's page are refused (Origin `{}`): call the \
                     API from a program, or from a page this daemon serves",
                    origin.to_str().unwrap_or("?").escape_debug()
                ),
            ));
        }
    }
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body && !is_json(headers.get(header::CONTENT_TYPE)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a request with a body must send it as JSON: set `Content-Type: application/json`",
        ));
    }
    Ok(())
}

fn is_json(v: Option<&axum::http::HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// IP literals (v4, `[v6]`), `localhost` and `*.localhost`, and the configured names, each
/// with or without a port.
fn host_allowed(api_hosts: &[String], host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        })
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || api_hosts.contains(&name)
}

async fn api_not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no API route {} {}: the README's \"Running it\" section lists the routes",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no route {}: the API lives under /api/v1, the dashboard at /",
            req.uri().path()
        ),
    )
}

/// When a token is configured every `/api` call needs `Authorization: Bearer <token>`.
async fn require_token(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let Some(expected) = state.api_token.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = given.and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    });
    match token {
        Some(t) if constant_time_eq(t.trim().as_bytes(), expected.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong: use the daemon's SPOOL_API_TOKEN (clients: SPOOL_TOKEN)",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this daemon needs a token: send `Authorization: Bearer <token>` (clients: set SPOOL_TOKEN)",
        )
        .into_response(),
    }
}

/// Compares in time that depends only on the lengths, so a wrong token's timing does not
/// tell how much of it was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// Bind `addr`, print `listening on http://ADDR` (the real port when 0 was asked), and serve
/// until `shutdown` resolves. Returns once the server has stopped.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    use anyhow::Context;
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr}: is another daemon running there? pick another with --listen"
        )
    })?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    Ok((listener, local))
}

/// Serve `state`'s router until `shutdown` resolves, then let open connections finish
/// (SSE streams end on the daemon's stop flag). One task per connection under a semaphore of
/// `http.max_connections`: past it, a connection is answered 503 with `Retry-After` and
/// closed. hyper's header read timeout (`http.header_timeout`) drops half-sent request heads
/// and idle keep-alive connections, so slow clients cannot hold the slots.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let limits = state.api;
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    // Each connection task holds a sender; `recv` returns None once all have ended.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { let _ = closing.wait_for(|c| *c).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop((slot, alive));
        });
    }
    let _ = closing_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    Ok(())
}

/// How long a client told 503 should wait before trying again, in seconds.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

/// Answer a connection over the cap without reading its request: 503, then close.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":{"code":"too_many_connections","message":"the daemon has as many connections open as `http.max_connections` allows; retry shortly"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {RETRY_AFTER_SECS}\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, host_allowed};

    #[test]
    fn hosts_other_than_ips_localhost_and_configured_names_are_refused() {
        let names = vec!["spool.internal".to_string()];
        for ok in [
            "127.0.0.1:7878",
            "127.0.0.1",
            "[::1]:7878",
            "localhost:7878",
            "LOCALHOST",
            "app.localhost",
            "10.0.0.5:80",
            "spool.internal:7878",
            "spool.internal.",
        ] {
            assert!(host_allowed(&names, ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7878",
            "localhost.evil.example",
            "[zz]:1",
        ] {
            assert!(!host_allowed(&names, bad), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
