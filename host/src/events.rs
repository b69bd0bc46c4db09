//! Live job and plugin events. Storage is the event log (backends append job events as part of
//! each change, so every daemon sharing a storage sees every job's events); the `EventHub` tails
//! it and broadcasts each new event in order to the SSE streams of this daemon. Writers in this
//! process `poke` the hub so live events go out at once; a short timer catches writes made by
//! other daemons.

use crate::storage::{Event, Storage};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, broadcast, watch};

/// Events read from storage per call.
const PAGE: usize = 1000;
/// Subscribers that fall further behind than this re-read from storage (`Lagged`).
const CHANNEL: usize = 8192;
/// How often to look for events written by other daemons when nobody pokes.
const IDLE_POLL: Duration = Duration::from_millis(250);

pub struct EventHub {
    storage: Arc<dyn Storage>,
    tx: broadcast::Sender<Arc<Event>>,
    poke: Notify,
    /// The last event broadcast (or skipped at startup). Written only by `run_once`.
    cursor: Mutex<Option<String>>,
}

impl EventHub {
    pub fn new(storage: Arc<dyn Storage>) -> Arc<EventHub> {
        let (tx, _) = broadcast::channel(CHANNEL);
        Arc::new(EventHub {
            storage,
            tx,
            poke: Notify::new(),
            cursor: Mutex::new(None),
        })
    }

    /// Something was written: look for new events now.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Every event broadcast from now on, in storage order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Move the cursor past every stored event without broadcasting (at startup: old events
    /// are for clients that resume with `Last-Event-ID`, read from storage). Returns how many
    /// were skipped.
    pub async fn skip_to_end(&self) -> crate::storage::Result<u64> {
        let mut cursor = self.cursor.lock().await;
        let mut skipped = 0;
        loop {
            let page = self
                .storage
                .events_since(cursor.as_deref(), 10 * PAGE)
                .await?;
            skipped += page.len() as u64;
            match page.last() {
                Some(e) => *cursor = Some(e.id.clone()),
                None => return Ok(skipped),
            }
            if page.len() < 10 * PAGE {
                return Ok(skipped);
            }
        }
    }

    /// Broadcast the events stored since the last call (one page); returns how many.
    pub async fn run_once(&self) -> crate::storage::Result<usize> {
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
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.run_once().await {
                Ok(n) if n == PAGE => continue,
                Ok(_) => {
                    failing = false;
                    tokio::select! {
                        _ = self.poke.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read events from storage; retrying");
                        failing = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
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
