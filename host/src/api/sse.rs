//! `GET /api/v1/events`: Server-Sent Events (`id:` = event id, `event:` = kind, `data:` = the
//! event as JSON), filtered by `?job=`, `?type=` (job type) and `?kind=` (kind or prefix).
//!
//! Without `Last-Event-ID` (or `?after=`) a client gets events from now on. With one, it first
//! reads the stored events after that id, then switches to the live broadcast. The broadcast
//! subscription is taken *before* the catch-up read, so nothing written in between is missed;
//! events seen in both are dropped: by id order (ids are integers or Redis stream ids), or for
//! ids of another form by remembering the catch-up's ids. A client that falls too far behind
//! the broadcast goes back to reading storage from its last id.

use super::ApiState;
use super::error::ApiError;
use crate::events::EventFilter;
use crate::storage::Event;
use crate::storage::StorageError;
use crate::storage::compare_event_ids;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// Stored events read per catch-up query.
const CATCH_UP_PAGE: usize = 500;
/// How many catch-up ids to remember for de-duplication: more than the broadcast can hold
/// between the subscription and the end of the catch-up in practice.
const DEDUP_WINDOW: usize = 16_384;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    job: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
    kind: Option<String>,
    /// Same as the `Last-Event-ID` header (handy for curl).
    after: Option<String>,
}

/// Counts one open SSE stream for as long as it lives.
struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    /// A slot, or None when `max` streams are open already.
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<StreamSlot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| StreamSlot(open.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn events(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.after)
        .filter(|s| !s.is_empty());
    let filter = EventFilter {
        job_id: q.job.filter(|s| !s.is_empty()),
        job_type: q.job_type.filter(|s| !s.is_empty()),
        kind: q.kind.filter(|s| !s.is_empty()),
    };
    let Some(slot) = StreamSlot::take(&state.event_streams, state.api.max_event_streams) else {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "{} event streams are open, the most `http.max_event_streams` allows: retry \
                 shortly, or close a stream",
                state.api.max_event_streams
            ),
        )
        .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(super::routes::RETRY_AFTER_SECS),
        );
        return r;
    };
    // A resume id the storage cannot read is the client's mistake: say so now, as a 400,
    // rather than as a storage error inside the stream.
    if let Some(id) = &resume
        && let Err(StorageError::InvalidInput(m)) = state.storage.events_since(Some(id), 1).await
    {
        return ApiError::bad_request(format!("`Last-Event-ID`: {m}")).into_response();
    }
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        stream_events(state, filter, resume, tx).await;
        drop(slot);
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

type Tx = mpsc::Sender<Result<SseEvent, Infallible>>;

/// Ids delivered by the last catch-up, to drop their copies from the broadcast.
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
    /// False once a broadcast event was new: later ones are all new too.
    active: bool,
}

impl Seen {
    fn new() -> Self {
        Self {
            order: VecDeque::new(),
            set: HashSet::new(),
            active: false,
        }
    }
    fn remember(&mut self, id: &str) {
        self.active = true;
        if self.order.len() == DEDUP_WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id.to_string());
        self.set.insert(id.to_string());
    }
    /// Whether a broadcast event was already delivered by the catch-up.
    fn already_sent(&mut self, id: &str) -> bool {
        if !self.active {
            return false;
        }
        if self.set.contains(id) {
            return true;
        }
        self.active = false;
        self.order.clear();
        self.set.clear();
        false
    }
}

async fn stream_events(state: Arc<ApiState>, filter: EventFilter, resume: Option<String>, tx: Tx) {
    let mut stop = state.stop.clone();
    let mut live = state.events.subscribe();
    // Where the next catch-up reads from (the client's id at first), and the last id this
    // stream delivered: only ids read from this storage order broadcast events. A client's
    // id from elsewhere (a reset store, a restored backup) must not hide live events.
    let mut cursor = Cursor {
        read_after: resume.clone(),
        delivered: None,
    };
    let mut seen = Seen::new();
    if resume.is_some() && !catch_up(&state, &filter, &mut cursor, &mut seen, &tx).await {
        return;
    }
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = stop.changed() => return,
            got = live.recv() => match got {
                Ok(event) => {
                    if already_sent(&cursor.delivered, &mut seen, &event.id) {
                        continue;
                    }
                    cursor.delivered_now(&event.id);
                    if filter.matches(&event) && !send(&tx, &event).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    live = state.events.subscribe();
                    if !catch_up(&state, &filter, &mut cursor, &mut seen, &tx).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Whether a broadcast event was already delivered: by id order where ids have a known form,
/// else by the ids the last catch-up delivered.
fn already_sent(last: &Option<String>, seen: &mut Seen, id: &str) -> bool {
    if let Some(last) = last
        && let Some(order) = compare_event_ids(id, last)
    {
        return order != std::cmp::Ordering::Greater;
    }
    seen.already_sent(id)
}

/// Where a stream stands (see `stream_events`).
struct Cursor {
    read_after: Option<String>,
    delivered: Option<String>,
}

impl Cursor {
    fn delivered_now(&mut self, id: &str) {
        self.read_after = Some(id.to_string());
        self.delivered = Some(id.to_string());
    }
}

/// Read stored events after the cursor until none are left. False when the client is gone.
async fn catch_up(
    state: &ApiState,
    filter: &EventFilter,
    cursor: &mut Cursor,
    seen: &mut Seen,
    tx: &Tx,
) -> bool {
    loop {
        let page = match state
            .storage
            .events_since(cursor.read_after.as_deref(), CATCH_UP_PAGE)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read events for an SSE client; closing it");
                let msg = serde_json::json!({"error": {"code": "storage_error", "message": e.to_string()}});
                let _ = tx
                    .send(Ok(SseEvent::default().event("error").data(msg.to_string())))
                    .await;
                return false;
            }
        };
        let n = page.len();
        for event in page {
            seen.remember(&event.id);
            cursor.delivered_now(&event.id);
            if filter.matches(&event) && !send(tx, &event).await {
                return false;
            }
        }
        if n < CATCH_UP_PAGE {
            return true;
        }
    }
}

async fn send(tx: &Tx, event: &Event) -> bool {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    let sse = SseEvent::default()
        .id(event.id.clone())
        .event(event.kind.clone())
        .data(data);
    tx.send(Ok(sse)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn seen_drops_copies_until_the_first_new_event() {
        let mut s = Seen::new();
        s.remember("1");
        s.remember("2");
        assert!(s.already_sent("2"));
        assert!(!s.already_sent("3"));
        // After a new one, nothing is treated as a copy any more.
        assert!(!s.already_sent("1"));
    }
}
