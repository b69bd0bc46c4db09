//! The route table, the bearer-token check, body limits, and `serve` (bind, print the
//! `listening on` line, graceful shutdown).

use super::ApiState;
use super::error::ApiError;
use super::{bulk, handlers, health, sse, ui};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
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
        .with_state(state)
}

async fn api_not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no API route {} {}: see DESIGN.md for the routes",
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

pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
