//! Waking idle workers without polling. The scripts PUBLISH on `{prefix}:wake` whenever a
//! job becomes ready (enqueue, promotion, release, reaped lease, replay, import); every
//! daemon sharing the Redis keeps one subscription on that channel (a background task here)
//! and turns each message into a `Notify` signal for its own `wait_for_work` callers.
//!
//! The subscription reconnects on its own (with backoff), pings every 15 s so that a
//! silently dead connection is noticed, and signals once after each (re)subscribe because
//! messages published while it was down are lost. Classic pub/sub reaches subscribers on
//! every node of a Cluster and on replicas, so subscribing to any node works.

use super::config::{RedisConfig, Topology};
use super::conn::{node_client, sentinel_client};
use crate::storage::Signal;
use futures::StreamExt;
use redis::RedisResult;
use redis::aio::PubSub;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

const PING_EVERY: Duration = Duration::from_secs(15);

/// Wakes the waiters of this process (see `storage::Signal`) and says whether the
/// subscription is up.
#[derive(Default)]
pub struct WorkSignal {
    notify: Signal,
    /// Whether the subscription is up: written by the listener task, read by `info`.
    subscribed: AtomicBool,
}

impl WorkSignal {
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    pub fn signal(&self) {
        self.notify.notify();
    }

    pub async fn wait(&self, timeout: Duration) {
        self.notify.wait(timeout).await;
    }
}

/// The subscription task; it stops when this is dropped.
pub struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    pub fn start(cfg: RedisConfig, channel: String, signal: Arc<WorkSignal>) -> Listener {
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut node = 0usize;
            let mut reported = false;
            loop {
                match subscribe(&cfg, node, &channel).await {
                    Ok(pubsub) => {
                        if reported {
                            tracing::info!(channel, "redis wake-up subscription restored");
                        }
                        reported = false;
                        backoff = Duration::from_millis(100);
                        signal.subscribed.store(true, Ordering::Relaxed);
                        signal.signal();
                        listen(pubsub, &signal).await;
                        signal.subscribed.store(false, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if !reported {
                            tracing::warn!(
                                error = %e,
                                channel,
                                "redis wake-up subscription failed; idle workers fall back to \
                                 their poll interval until it is back"
                            );
                            reported = true;
                        }
                    }
                }
                // The next Cluster seed node, in case this one is the one that died.
                node = node.wrapping_add(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        Listener { task }
    }
}

async fn subscribe(cfg: &RedisConfig, node: usize, channel: &str) -> RedisResult<PubSub> {
    let client = match &cfg.topology {
        Topology::Single { node, db, .. } => node_client(cfg, node, *db)?,
        Topology::Cluster { nodes, .. } => node_client(cfg, &nodes[node % nodes.len()], 0)?,
        Topology::Sentinel { .. } => sentinel_client(cfg)?.async_get_client().await?,
    };
    let mut pubsub = tokio::time::timeout(cfg.connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| timeout_error())??;
    tokio::time::timeout(cfg.timeout, pubsub.subscribe(channel))
        .await
        .map_err(|_| timeout_error())??;
    Ok(pubsub)
}

/// Forwards messages until the connection ends or stops answering pings.
async fn listen(pubsub: PubSub, signal: &WorkSignal) {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(_) => signal.signal(),
                None => return,
            },
            _ = ping.tick() => {
                let answered = tokio::time::timeout(Duration::from_secs(5), sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

fn timeout_error() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "timed out",
    ))
}
