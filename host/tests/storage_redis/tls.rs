//! Redis storage over TLS (`rediss://`) against a `redis-server` that speaks only TLS
//! (`--port 0 --tls-port P`), with a throwaway CA made by `openssl`: the storage conformance
//! suite over TLS (commands and the wake-up subscription both use it), then the failures that
//! must say what to do (wrong CA, system roots only, missing files, a client certificate the
//! server requires), a TLS Cluster and a TLS Sentinel set.
//!
//! Needs `redis-server` built with TLS and `openssl`; under CI=true a missing one fails.

use super::Backend;
use spool_host::job::{Clock, ManualClock, SystemClock};
use spool_host::storage::{self, ClaimRequest, StorageError, StorageOptions};
use spool_tests::redis::{self as test_redis, Cluster, MASTER_NAME, SentinelSet, Server};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A server, or None to skip (no tools, not under CI); a panic under CI=true.
fn server(client_auth: bool) -> Option<Server> {
    if !test_redis::require_tls_tools("redis TLS storage tests") {
        return None;
    }
    match Server::start_tls(client_auth) {
        Ok(s) => Some(s),
        Err(e) => panic!("cannot start a TLS redis-server for the TLS tests: {e}"),
    }
}

/// The TLS server shared by the tests (server-only TLS, no client certificates).
fn shared() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER.get_or_init(|| server(false)).as_ref()
}

/// The storage URL of a store under `prefix` on `srv`, in clock=local mode.
fn url(srv: &Server, prefix: &str) -> String {
    format!("{}&clock=local", srv.url(prefix))
}

async fn fresh(srv: &Server, clock: Arc<ManualClock>) -> Backend {
    let url = url(srv, &test_redis::fresh_prefix("tls"));
    storage::open(&url, storage::conformance::options(), clock)
        .await
        .expect("open redis storage over tls")
}

/// A fresh store on the shared TLS server, or None when the tools are missing.
async fn conformance_store(clock: Arc<ManualClock>) -> Option<Backend> {
    Some(fresh(shared()?, clock).await)
}

mod conformance {
    spool_host::conformance_tests!(super::conformance_store);
}

async fn open_err(url: &str) -> StorageError {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match storage::open(url, StorageOptions::default(), clock).await {
        Ok(_) => panic!("expected `{url}` to fail"),
        Err(e) => e,
    }
}

/// Opens `url(ca)` with `ca` a fresh CA (made in `dir`) that did not sign the server: an
/// outage (`Unavailable`) whose message names the certificate and `ca=`. Returns the message.
async fn another_ca_is_refused(dir: &std::path::Path, url: impl FnOnce(&str) -> String) -> String {
    let other = dir.join("other-ca");
    std::fs::create_dir_all(&other).expect("dir");
    let wrong = test_redis::make_ca(&other, "other").expect("make another ca");
    let e = open_err(&url(&wrong.display().to_string())).await;
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("certificate") && msg.contains("ca="), "{msg}");
    msg
}

/// enqueue, claim, complete; then checks the job is done.
async fn round_trip(s: &Backend) {
    let job = s
        .enqueue(storage::conformance::job("tls"))
        .await
        .expect("enqueue over tls")
        .job;
    let claimed = s
        .claim(ClaimRequest {
            types: vec!["tls".into()],
            limit: 1,
            lease: Duration::from_secs(30),
            worker: "w".into(),
        })
        .await
        .expect("claim over tls");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.id, job.id);
    s.complete(vec![storage::conformance::completion(&claimed[0])])
        .await
        .expect("complete over tls");
    let done = s.get(&job.id).await.expect("get").expect("job exists");
    assert_eq!(done.status.to_string(), "completed", "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_over_tls_and_wake_ups_arrive_over_tls() {
    let Some(srv) = shared() else { return };
    let clock = Arc::new(ManualClock::new());
    let a = fresh(srv, clock.clone()).await;
    round_trip(&a).await;
    let info = a.info().await.expect("info over tls");
    assert!(format!("{info:?}").contains("rediss://"), "{info:?}");

    wake_up_arrives(&url(srv, &test_redis::fresh_prefix("tlswake")), clock).await;
}

/// A second daemon on `url`'s prefix: its enqueue wakes the first one's waiter through the
/// pub/sub subscription (over TLS here).
async fn wake_up_arrives(url: &str, clock: Arc<ManualClock>) {
    let url = url.to_owned();
    let waiter = storage::open(&url, StorageOptions::default(), clock.clone())
        .await
        .expect("open waiter");
    let other = storage::open(&url, StorageOptions::default(), clock.clone())
        .await
        .expect("open enqueuer");
    // Let the first wake-up (sent when the subscription comes up) be consumed.
    waiter.wait_for_work(Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let wait = tokio::spawn({
            let waiter = waiter.clone();
            async move { waiter.wait_for_work(Duration::from_secs(20)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        other
            .enqueue(storage::conformance::job("tls"))
            .await
            .expect("enqueue");
        wait.await.expect("waiter task");
        if started.elapsed() < Duration::from_secs(5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no wake-up over the tls subscription"
        );
    }
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused_with_a_clear_error() {
    let Some(srv) = shared() else { return };
    let msg = another_ca_is_refused(srv.dir(), |ca| {
        format!(
            "rediss://127.0.0.1:{}/?ca={ca}&connect_timeout=2s",
            srv.port
        )
    })
    .await;
    assert!(msg.contains("cannot connect to redis"), "{msg}");
}

#[tokio::test]
async fn without_ca_the_system_roots_do_not_trust_a_private_ca() {
    let Some(srv) = shared() else { return };
    let url = format!("rediss://127.0.0.1:{}/?connect_timeout=2s", srv.port);
    let e = open_err(&url).await.to_string();
    assert!(
        e.contains("cannot connect to redis") && e.contains("certificate"),
        "{e}"
    );
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_and_missing_files_say_what_to_do() {
    let Some(srv) = shared() else { return };
    let err = open_err(&format!(
        "rediss://127.0.0.1:{}/?ca=/nonexistent/ca.pem",
        srv.port
    ))
    .await;
    // A configuration error, not an outage: a fallback spool must not wait for it.
    assert!(matches!(err, StorageError::InvalidInput(_)), "{err:?}");
    let e = err.to_string();
    assert!(
        e.contains("/nonexistent/ca.pem") && e.contains("ca="),
        "{e}"
    );
    let e = open_err(&format!(
        "redis://127.0.0.1:{}/?connect_timeout=2s&timeout=2s",
        srv.port
    ))
    .await;
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    let e = open_err("rediss://127.0.0.1:1/?insecure=true").await;
    assert!(matches!(e, StorageError::InvalidInput(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_client_certificates_takes_cert_and_key() {
    let Some(srv) = server(true) else { return };
    let base = url(&srv, &test_redis::fresh_prefix("mtls"));
    let url = format!(
        "{base}&cert={}&key={}",
        srv.file("client.pem"),
        srv.file("client.key")
    );
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    let s = storage::open(&url, StorageOptions::default(), clock)
        .await
        .expect("open with a client certificate");
    round_trip(&s).await;
    let e = open_err(&format!("{base}&connect_timeout=2s&timeout=2s")).await;
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
}

/// A Cluster over TLS (`rediss+cluster://`): jobs run across the nodes the Cluster announces
/// (reached over TLS too), the wake-up subscription arrives over TLS, and a wrong CA or a
/// plain url are refused with errors that say what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_runs_jobs_and_wakes_workers() {
    if !test_redis::require_tls_tools("redis TLS cluster test") {
        return;
    }
    let cluster = Cluster::start_tls().expect("start a three-node TLS cluster");
    let clock = Arc::new(ManualClock::new());
    let cluster_url = |prefix: &str| format!("{}&clock=local", cluster.url(prefix));
    let s = storage::open(
        &cluster_url(&test_redis::fresh_prefix("tlscluster")),
        StorageOptions::default(),
        clock.clone(),
    )
    .await
    .expect("open redis cluster storage over tls");
    round_trip(&s).await;
    // Several jobs in one batch: the prefix's hash tag keeps them on one node's slot.
    let batch: Vec<_> = (0..50)
        .map(|i| storage::conformance::job(&format!("tls-{}", i % 5)))
        .collect();
    assert_eq!(s.enqueue_batch(batch).await.expect("batch").len(), 50);
    assert_eq!(
        s.stats().await.expect("stats").types.len(),
        6,
        "five batch types and `tls`"
    );
    wake_up_arrives(&cluster_url(&test_redis::fresh_prefix("tlsclwake")), clock).await;

    another_ca_is_refused(cluster.dir(), |ca| {
        format!(
            "rediss+cluster://127.0.0.1:{}/?ca={ca}&connect_timeout=2s",
            cluster.ports[0]
        )
    })
    .await;
    let e = open_err(&format!(
        "redis+cluster://127.0.0.1:{}/?connect_timeout=2s&timeout=2s",
        cluster.ports[0]
    ))
    .await;
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
}

/// `rediss+sentinel://`: the Sentinel, the master and the replica speak only TLS. Jobs run,
/// wake-ups arrive, a failover is followed (the storage asks the Sentinel again, over TLS,
/// and reaches the new master over TLS), and a Sentinel signed by another CA is refused
/// with a message that names the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_runs_jobs_and_follows_a_failover() {
    if !test_redis::require_tls_tools("redis TLS sentinel test") {
        return;
    }
    let set = SentinelSet::start_tls().expect("start a TLS sentinel set");
    let clock = Arc::new(ManualClock::new());
    let set_url = |prefix: &str| format!("{}&clock=local", set.url(prefix));
    let s = storage::open(
        &set_url(&test_redis::fresh_prefix("tlssent")),
        StorageOptions::default(),
        clock.clone(),
    )
    .await
    .expect("open redis sentinel storage over tls");
    round_trip(&s).await;
    let info = s.info().await.expect("info over tls");
    assert_eq!(info.details["role"], "master", "{info:?}");
    wake_up_arrives(&set_url(&test_redis::fresh_prefix("tlssentwake")), clock).await;

    let before = s
        .enqueue(storage::conformance::job("tls-fo"))
        .await
        .expect("enqueue before the failover")
        .job
        .id;
    assert_eq!(
        set.ask(set.master, &["WAIT", "1", "5000"])
            .map(|o| o.trim().to_owned()),
        Some("1".to_owned()),
        "the replica acknowledged the writes"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while set
        .ask(set.sentinel, &["SENTINEL", "FAILOVER", MASTER_NAME])
        .is_none_or(|o| !o.contains("OK"))
    {
        assert!(
            Instant::now() < deadline,
            "the sentinel refused the failover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while set
        .ask(set.master, &["INFO", "replication"])
        .is_none_or(|o| !o.contains("role:slave"))
    {
        assert!(Instant::now() < deadline, "the old master was not demoted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = loop {
        match s.enqueue(storage::conformance::job("tls-fo")).await {
            Ok(e) => break e.job.id,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write after the failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut got: Vec<String> = storage::conformance::claim(&s, &["tls-fo"], 10)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    got.sort();
    let mut want = vec![before, after];
    want.sort();
    assert_eq!(got, want, "both jobs are on the new master");
    assert!(
        set.ask(set.replica, &["INFO", "replication"])
            .is_some_and(|o| o.contains("role:master")),
        "the replica is the master now"
    );

    another_ca_is_refused(set.dir(), |ca| {
        format!(
            "rediss+sentinel://127.0.0.1:{}/{}?ca={ca}&connect_timeout=2s&timeout=2s",
            set.sentinel, MASTER_NAME
        )
    })
    .await;
}
