//! Live job and plugin events. Storage is the event log (backends append job events as part of
//! each change, so every daemon sharing a storage sees every job's events); the `EventHub` tails
//! it and broadcasts each new event in order to the SSE streams of this daemon. Storage signals
//! the writes of this process (`Storage::wait_for_events`), so their events go out at once; a
//! short timer catches writes made by other daemons. While nobody listens the hub only moves its
//! cursor to the newest event, once a second, without reading the events, so a busy daemon does
//! not read back every event it writes; a new subscriber wakes it at once (and may see up to a
//! second of events from just before it connected).

use crate::service::{Next, Service};
use crate::storage::{Event, Storage};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, broadcast, watch};

/// Events read from storage per call.
const PAGE: usize = 1000;
/// Subscribers that fall further behind than this re-read from storage (`Lagged`).
const CHANNEL: usize = 8192;
/// How often to look for events written by other daemons.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// How often the cursor moves while nobody listens.
const UNWATCHED_POLL: Duration = Duration::from_secs(1);

pub struct EventHub {
    storage: Arc<dyn Storage>,
    tx: broadcast::Sender<Arc<Event>>,
    /// A subscriber arrived: catch up now even if nobody was listening.
    subscribed: Notify,
    /// The last event broadcast (or skipped at startup). Written only by `run_once`.
    cursor: Mutex<Option<String>>,
    /// Start-up could not skip the old events (storage was down): `run_once` skips them on
    /// its first successful read instead of broadcasting them.
    skip_pending: std::sync::atomic::AtomicBool,
}

impl EventHub {
    pub fn new(storage: Arc<dyn Storage>) -> Arc<EventHub> {
        let (tx, _) = broadcast::channel(CHANNEL);
        Arc::new(EventHub {
            storage,
            tx,
            subscribed: Notify::new(),
            cursor: Mutex::new(None),
            skip_pending: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Every event broadcast from now on, in storage order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        let rx = self.tx.subscribe();
        self.subscribed.notify_one();
        rx
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Move the cursor past every stored event without broadcasting (at startup: old events
    /// are for clients that resume with `Last-Event-ID`, read from storage), without reading
    /// them.
    pub async fn skip_to_end(&self) -> crate::storage::Result<()> {
        let latest = self.storage.latest_event_id().await?;
        let mut cursor = self.cursor.lock().await;
        if latest.is_some() {
            *cursor = latest;
        }
        Ok(())
    }

    /// `skip_to_end` failed at start-up: do it on the first read that works.
    pub fn skip_on_first_read(&self) {
        self.skip_pending
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Broadcast the events stored since the last call (one page); returns how many.
    pub async fn run_once(&self) -> crate::storage::Result<usize> {
        if self.skip_pending.load(std::sync::atomic::Ordering::SeqCst) {
            self.skip_to_end().await?;
            self.skip_pending
                .store(false, std::sync::atomic::Ordering::SeqCst);
            return Ok(0);
        }
        if self.tx.receiver_count() == 0 {
            // Nobody listens: move past what is there without reading it (a busy daemon would
            // otherwise read back every event it writes). A subscriber that arrived meanwhile
            // keeps the cursor where it was, so it misses nothing written after it subscribed.
            let latest = self.storage.latest_event_id().await?;
            if self.tx.receiver_count() == 0 {
                let mut cursor = self.cursor.lock().await;
                if latest.is_some() {
                    *cursor = latest;
                }
                return Ok(0);
            }
        }
        let mut cursor = self.cursor.lock().await;
        let page = self.storage.events_since(cursor.as_deref(), PAGE).await?;
        if let Some(last) = page.last() {
            *cursor = Some(last.id.clone());
        }
        let n = page.len();
        for event in page {
            // No subscribers is fine: the event stays in storage for later readers.
            let _ = self.tx.send(Arc::new(event));
        }
        Ok(n)
    }

    /// Tail storage until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        crate::service::run(Tail(self), stop).await;
    }
}

/// The hub's loop: a page of events per round; then, while nobody listens, a slow poll that
/// a new subscriber cuts short, else storage's signal of this process's writes with a short
/// poll for other daemons' writes.
struct Tail(Arc<EventHub>);

#[async_trait::async_trait]
impl Service for Tail {
    type Error = crate::storage::StorageError;

    fn name(&self) -> &'static str {
        "event hub"
    }

    fn failure(&self) -> &'static str {
        "cannot read events from storage"
    }

    async fn run_once(&mut self) -> Result<Next, Self::Error> {
        let n = self.0.run_once().await?;
        Ok(if n == PAGE {
            Next::Now
        } else if self.0.tx.receiver_count() == 0 {
            Next::Wait(UNWATCHED_POLL)
        } else {
            Next::Wait(IDLE_POLL)
        })
    }

    async fn wait(&mut self, limit: Duration) {
        if self.0.tx.receiver_count() == 0 {
            tokio::select! {
                _ = self.0.subscribed.notified() => {}
                _ = tokio::time::sleep(limit) => {}
            }
        } else {
            self.0.storage.wait_for_events(limit).await;
        }
    }
}

/// Which events an SSE client wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub job_id: Option<String>,
    pub job_type: Option<String>,
    /// An event kind (`job.completed`) or a prefix of kinds (`job`, `plugin`).
    pub kind: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        if let Some(id) = &self.job_id
            && e.job_id.as_deref() != Some(id.as_str())
        {
            return false;
        }
        if let Some(t) = &self.job_type
            && e.job_type.as_deref() != Some(t.as_str())
        {
            return false;
        }
        if let Some(k) = &self.kind {
            let prefix_match = e.kind.len() > k.len()
                && e.kind.starts_with(k.as_str())
                && e.kind.as_bytes()[k.len()] == b'.';
            if e.kind != *k && !prefix_match {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::SystemClock;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::{NewEvent, StorageOptions};

    fn publish(kind: &str) -> NewEvent {
        NewEvent {
            kind: kind.into(),
            job_id: None,
            job_type: None,
            data: serde_json::json!({}),
        }
    }

    #[tokio::test]
    async fn unwatched_hub_moves_past_events_and_a_subscriber_gets_what_follows() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new(
            StorageOptions::default(),
            Arc::new(SystemClock),
        ));
        for _ in 0..2500 {
            storage.publish_event(publish("test.old")).await.unwrap();
        }
        let hub = EventHub::new(storage.clone());
        hub.skip_to_end().await.unwrap();
        storage
            .publish_event(publish("test.unwatched"))
            .await
            .unwrap();
        // Nobody listens: one call moves past everything, broadcasting nothing.
        assert_eq!(hub.run_once().await.unwrap(), 0);
        let mut rx = hub.subscribe();
        let next = storage.publish_event(publish("test.live")).await.unwrap();
        assert_eq!(hub.run_once().await.unwrap(), 1);
        let got = rx.try_recv().unwrap();
        assert_eq!(
            (got.kind.as_str(), got.id.as_str()),
            ("test.live", next.id.as_str())
        );
        assert!(rx.try_recv().is_err(), "only what came after the cursor");
    }

    fn ev(kind: &str, job: Option<&str>, ty: Option<&str>) -> Event {
        Event {
            id: "1".into(),
            kind: kind.into(),
            job_id: job.map(str::to_string),
            job_type: ty.map(str::to_string),
            at: 0,
            data: serde_json::json!({}),
        }
    }

    #[test]
    fn filter_matches_job_type_and_kind_prefix() {
        let f = EventFilter {
            kind: Some("job".into()),
            ..Default::default()
        };
        assert!(f.matches(&ev("job.completed", Some("a"), Some("echo"))));
        assert!(!f.matches(&ev("plugin.loaded", None, None)));
        assert!(!f.matches(&ev("jobs.x", None, None)));
        let f = EventFilter {
            job_id: Some("a".into()),
            job_type: Some("echo".into()),
            kind: None,
        };
        assert!(f.matches(&ev("job.started", Some("a"), Some("echo"))));
        assert!(!f.matches(&ev("job.started", Some("b"), Some("echo"))));
        assert!(!f.matches(&ev("plugin.loaded", None, None)));
    }
}
