//! End to end on Redis: several real `spool` daemons share one `redis-server` that the test
//! starts on a free loopback port, and split the work. Three daemons drain 10,000 echo jobs,
//! each run exactly once; `kill -9` of one daemon mid-run, a Redis crash and restart (AOF,
//! `appendfsync always`) and a Sentinel failover mid-run lose no job; foreign keys of every
//! type in the same db are never touched and cause no WRONGTYPE.
//!
//! Needs `redis-server` (a loud skip without it; a failure under `CI=true`), the dev binary
//! (`cargo build -p spool-host`) and the plugins (`scripts/build-plugins.sh`).
//! Run: `cargo test -p spool-tests --test redis_e2e`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::redis::{self, Redis, Reply, SentinelSet, Server};
use spool_tests::{Daemon, eventually_blocking};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

/// `n` daemons with `workers` each on one storage URL, leases of `lease`.
fn daemons(url: &str, n: usize, plugins: &[&str], lease: &str) -> Vec<Daemon> {
    (0..n)
        .map(|_| {
            Daemon::builder(plugins)
                .storage(url)
                .args(&["--workers", "4"])
                .env("SPOOL_LEASE", lease)
                .start()
        })
        .collect()
}

/// Submits `n` copies of `job` in batches of 1000, round-robin over the daemons.
fn submit_spread(ds: &[Daemon], n: usize, job: &Value) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for (i, chunk) in (0..n.div_ceil(1000)).enumerate() {
        let count = (n - chunk * 1000).min(1000);
        ids.extend(ds[i % ds.len()].submit_batch(&vec![job.clone(); count]));
    }
    assert_eq!(ids.len(), n, "every job was accepted");
    ids
}

/// Polls `d` until `n` jobs are completed; fails at once if any job failed.
fn wait_completed(d: &Daemon, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let a = d.get("/api/v1/stats");
        if a.status == 200 {
            let t = &a.body["totals"];
            let failed = t["failed"].as_u64().unwrap_or(0);
            assert_eq!(failed, 0, "no job may fail: {}", a.text);
            if t["completed"].as_u64() == Some(n) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{n} jobs were not completed within {limit:?}: {}",
            a.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls until at least `n` jobs are completed (the "mid-run" point).
fn wait_some_completed(d: &Daemon, n: u64) {
    eventually_blocking(&format!("{n} jobs to complete"), LONG, || {
        d.count("completed") >= n
    });
}

/// Checks that exactly `ids` are completed, none in another state, and returns each job's
/// attempt count.
fn completed_attempts(d: &Daemon, ids: &[String]) -> HashMap<String, u64> {
    for status in [
        "pending",
        "running",
        "retrying",
        "failed",
        "cancelled",
        "scheduled",
    ] {
        assert_eq!(d.count(status), 0, "no job may be left {status}");
    }
    let done = d.all_jobs("completed");
    let attempts: HashMap<String, u64> = done
        .iter()
        .map(|j| (spool_tests::id_of(j), j["attempt"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(done.len(), ids.len(), "each job is listed once");
    let want: HashSet<&String> = ids.iter().collect();
    let got: HashSet<&String> = attempts.keys().collect();
    assert_eq!(
        got, want,
        "the completed jobs are exactly the submitted ones"
    );
    attempts
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// No daemon log mentions WRONGTYPE.
fn assert_no_wrongtype(ds: &[Daemon]) {
    for d in ds {
        assert!(
            !d.logs().contains("WRONGTYPE"),
            "a daemon met a WRONGTYPE error:\n{}",
            d.logs()
        );
    }
}

/// `job_id -> number of job.started events`, read from the events stream `{prefix}:events`
/// itself.
fn started_events(conn: &mut Redis, prefix: &str) -> HashMap<String, u64> {
    let key = format!("{{{prefix}}}:events");
    let mut counts = HashMap::new();
    let mut start = "-".to_owned();
    loop {
        let page = conn
            .cmd(&["XRANGE", &key, &start, "+", "COUNT", "5000"])
            .expect("XRANGE events")
            .items();
        if page.is_empty() {
            return counts;
        }
        for entry in &page {
            let parts = entry.items();
            let id = parts[0].text();
            let fields: Vec<String> = parts[1].items().iter().map(Reply::text).collect();
            let get = |name: &str| {
                fields
                    .chunks(2)
                    .find(|kv| kv[0] == name)
                    .map(|kv| kv[1].clone())
                    .unwrap_or_default()
            };
            // An entry holds one script call's events: `e` is a JSON array of
            // `[kind, job_id, job_type, data]` (host/src/storage/redis/lua/lib.lua).
            let events: Vec<(String, String, String, serde_json::Value)> =
                serde_json::from_str(&get("e")).expect("an event entry's `e` field");
            for (kind, job_id, _, _) in events {
                if kind == "job.started" {
                    *counts.entry(job_id).or_insert(0) += 1;
                }
            }
            start = format!("({id}");
        }
    }
}

#[test]
fn three_daemons_on_one_redis_run_ten_thousand_jobs_exactly_once() {
    if !redis::require_redis("redis e2e: three daemons") {
        return;
    }
    let server = Server::start(&[]);
    let prefix = "e2e-many";
    let ds = daemons(&server.url(prefix), 3, &["echo"], "30s");
    let t0 = Instant::now();
    let ids = submit_spread(&ds, 10_000, &json!({"type": "echo", "payload": {"n": 1}}));
    wait_completed(&ds[0], 10_000, LONG);
    eprintln!(
        "three daemons drained 10,000 echo jobs in {:?}",
        t0.elapsed()
    );
    let attempts = completed_attempts(&ds[1], &ids);
    let more = attempts.values().filter(|a| **a != 1).count();
    assert_eq!(more, 0, "every job ran in exactly one attempt");
    let started = started_events(&mut server.conn(), prefix);
    for id in &ids {
        assert_eq!(started.get(id), Some(&1), "job {id} started exactly once");
    }
    assert_eq!(started.len(), ids.len(), "no other job started");
    assert_no_wrongtype(&ds);
}

#[test]
fn kill_9_of_one_daemon_mid_run_its_jobs_finish_elsewhere_after_the_lease() {
    if !redis::require_redis("redis e2e: kill -9") {
        return;
    }
    let server = Server::start(&[]);
    let mut ds = daemons(&server.url("e2e-kill"), 3, &["slow"], "3s");
    let ids = submit_spread(
        &ds,
        2000,
        &json!({"type": "slow", "payload": {"ms": 20, "step_ms": 20}}),
    );
    wait_some_completed(&ds[0], 300);
    ds[2].kill9();
    let killed_ms = now_ms();
    wait_completed(&ds[0], 2000, LONG);
    let attempts = completed_attempts(&ds[1], &ids);
    let rerun: Vec<&String> = attempts
        .iter()
        .filter(|(_, a)| **a == 2)
        .map(|(id, _)| id)
        .collect();
    assert!(
        !rerun.is_empty(),
        "the killed daemon's running jobs ran again (attempt 2)"
    );
    assert!(
        attempts.values().all(|a| *a <= 2),
        "no job ran more than twice"
    );
    // The interrupted jobs came back only once their 3 s leases ran out (the lease was
    // renewed every second before the kill, so at least ~2 s after it).
    for id in rerun {
        let j = ds[0].job(id);
        let started = spool_tests::millis(&j["started_at"]).expect("started_at");
        assert!(
            started >= killed_ms + 1500,
            "job {id} restarted {} ms after the kill, before its lease ran out: {j}",
            started - killed_ms
        );
    }
    assert_no_wrongtype(&ds[..2]);
}

#[test]
fn a_redis_crash_and_restart_with_aof_mid_run_loses_no_job() {
    if !redis::require_redis("redis e2e: redis restart") {
        return;
    }
    let mut server = Server::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let ds = daemons(&server.url("e2e-restart"), 3, &["slow"], "3s");
    let ids = submit_spread(
        &ds,
        2000,
        &json!({"type": "slow", "payload": {"ms": 10, "step_ms": 10}}),
    );
    wait_some_completed(&ds[0], 300);
    server.kill9();
    std::thread::sleep(Duration::from_millis(500)); // a real outage: the daemons see errors
    server.restart();
    wait_completed(&ds[0], 2000, LONG);
    let attempts = completed_attempts(&ds[2], &ids);
    let rerun = attempts.values().filter(|a| **a > 1).count();
    eprintln!("after the redis restart: {rerun} jobs needed a second attempt");
    assert!(
        attempts.values().all(|a| *a <= 2),
        "no job ran more than twice"
    );
    assert_no_wrongtype(&ds);
}

#[test]
fn a_sentinel_failover_mid_run_loses_no_job() {
    if !redis::require_redis("redis e2e: sentinel failover") {
        return;
    }
    let set = SentinelSet::start();
    let ds = daemons(&set.url("e2e-failover"), 3, &["slow"], "3s");
    let ids = submit_spread(
        &ds,
        2000,
        &json!({"type": "slow", "payload": {"ms": 10, "step_ms": 10}}),
    );
    // Every accepted job is on the replica before it is promoted (replication is async).
    let acked = redis::command(set.master, &["WAIT", "1", "5000"]).expect("WAIT");
    assert_eq!(acked, Reply::Int(1), "the replica acknowledged the writes");
    wait_some_completed(&ds[0], 300);
    let before = ds[0].count("completed");
    assert!(before < 2000, "the failover starts mid-run ({before} done)");
    set.failover();
    wait_completed(&ds[0], 2000, LONG);
    let attempts = completed_attempts(&ds[1], &ids);
    let rerun = attempts.values().filter(|a| **a > 1).count();
    eprintln!("after the failover: {rerun} jobs needed a second attempt");
    assert!(
        attempts.values().all(|a| *a <= 2),
        "no job ran more than twice"
    );
    // Everything is on the new master.
    let n = redis::command(set.replica, &["ZCARD", "{e2e-failover}:jobs:t:slow"]).expect("ZCARD");
    assert_eq!(n, Reply::Int(2000), "the new master holds every job");
    assert_no_wrongtype(&ds);
}

/// Plants one key of each type under `name` and returns the keys.
fn plant(conn: &mut Redis, name: &str) -> Vec<String> {
    let k = |t: &str| format!("{name}{t}");
    let cmds: Vec<Vec<String>> = vec![
        vec!["SET".into(), k("string"), "a value".into()],
        vec!["RPUSH".into(), k("list"), "a".into(), "b".into()],
        vec!["HSET".into(), k("hash"), "f".into(), "v".into()],
        vec!["SADD".into(), k("set"), "m1".into(), "m2".into()],
        vec!["ZADD".into(), k("zset"), "1".into(), "m".into()],
        vec![
            "XADD".into(),
            k("stream"),
            "*".into(),
            "f".into(),
            "v".into(),
        ],
    ];
    let mut keys = Vec::new();
    for c in cmds {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        let r = conn.cmd(&args).expect("plant a foreign key");
        assert!(!matches!(r, Reply::Error(_)), "{c:?}: {r:?}");
        keys.push(c[1].clone());
    }
    keys
}

/// DUMP and PTTL of each key.
fn snapshot(conn: &mut Redis, keys: &[String]) -> Vec<(String, Reply, Reply)> {
    keys.iter()
        .map(|k| {
            let dump = conn.cmd(&["DUMP", k]).expect("DUMP");
            let ttl = conn.cmd(&["PTTL", k]).expect("PTTL");
            (k.clone(), dump, ttl)
        })
        .collect()
}

#[test]
fn foreign_keys_of_every_type_in_the_same_db_are_never_touched() {
    if !redis::require_redis("redis e2e: foreign keys") {
        return;
    }
    let server = Server::start(&[]);
    let prefix = "e2e-foreign";
    let mut conn = server.conn();
    // Names close to Spool's own: other prefixes with Spool's layout, the bare tag, the
    // prefix without braces, and the default prefix.
    let mut keys = Vec::new();
    for name in [
        "plain:",
        "{e2e-foreign}",
        "{e2e-foreign}x:",
        "e2e-foreign:",
        "e2e-foreign:jobs:",
        "{e2e-foreign-other}:jobs",
        "{e2e-foreign-other}:events",
        "{spool}:jobs",
        "{spool}:ready:echo",
        "{e2e-forei}:jobs",
    ] {
        keys.extend(plant(&mut conn, name));
    }
    // And exact names of Spool's layout under other prefixes, each of a type Spool does not
    // use for it.
    for (cmd, key, rest) in [
        ("SET", "{spool}:jobs", vec!["x"]),
        ("RPUSH", "{spool}:events", vec!["x"]),
        ("SADD", "{e2e-foreign-other}:types", vec!["x"]),
        ("HSET", "{e2e-foreign-other}:ready:echo", vec!["f", "v"]),
        ("SET", "{e2e-foreign-other}:job:1", vec!["x"]),
    ] {
        let mut args = vec![cmd, key];
        args.extend(rest);
        let r = conn.cmd(&args).expect("plant a foreign key");
        assert!(!matches!(r, Reply::Error(_)), "{args:?}: {r:?}");
        keys.push(key.to_owned());
    }
    let before = snapshot(&mut conn, &keys);
    let ds = daemons(&server.url(prefix), 2, &["echo"], "30s");
    let ids = submit_spread(&ds, 2000, &json!({"type": "echo", "payload": {"n": 1}}));
    // More planted while the daemons work.
    let mut during = Vec::new();
    for name in ["during:", "{e2e-foreign}y:", "{spool}:job:"] {
        during.extend(plant(&mut conn, name));
    }
    let during_before = snapshot(&mut conn, &during);
    wait_completed(&ds[0], 2000, LONG);
    completed_attempts(&ds[1], &ids);
    // A second wave, so the daemons' sweeps and claims run with every foreign key present.
    let more = submit_spread(&ds, 500, &json!({"type": "echo", "payload": {"n": 2}}));
    wait_completed(&ds[0], 2500, LONG);
    assert_eq!(more.len(), 500);
    assert_eq!(
        snapshot(&mut conn, &keys),
        before,
        "keys planted before the run are untouched"
    );
    assert_eq!(
        snapshot(&mut conn, &during),
        during_before,
        "keys planted during the run are untouched"
    );
    // Every key in the db is either foreign or Spool's own.
    let mut cursor = "0".to_owned();
    let foreign: HashSet<&String> = keys.iter().chain(&during).collect();
    let own = format!("{{{prefix}}}:");
    let mut strays = Vec::new();
    loop {
        let r = conn
            .cmd(&["SCAN", &cursor, "COUNT", "1000"])
            .expect("SCAN")
            .items();
        cursor = r[0].text();
        for k in r[1].items() {
            let k = k.text();
            if !k.starts_with(&own) && !foreign.contains(&k) {
                strays.push(k);
            }
        }
        if cursor == "0" {
            break;
        }
    }
    assert!(strays.is_empty(), "keys outside the prefix: {strays:?}");
    assert_no_wrongtype(&ds);
}

/// A daemon on `url` runs an echo job, and nothing it prints contains `secret` (the marker
/// every password of the test holds).
fn runs_a_job_and_prints_no(url: &str, secret: &str) {
    let d = Daemon::builder(&["echo"]).storage(url).start();
    let job = d.submit(&json!({"type": "echo", "payload": {"auth": true}}));
    let done = d.wait_status(job["id"].as_str().expect("id"), "completed", LONG);
    assert_eq!(done["result"], json!({"auth": true}));
    // The harness's own first line shows the command; everything after is the daemon's.
    let printed: Vec<String> = d
        .logs()
        .lines()
        .filter(|l| !l.starts_with("=== daemon run"))
        .map(str::to_owned)
        .collect();
    assert!(
        printed.iter().all(|l| !l.contains(secret)),
        "a password reached the daemon's output: {printed:?}"
    );
}

#[test]
fn a_redis_that_requires_a_password_or_an_acl_user_serves_daemons_and_a_wrong_password_says_so() {
    if !redis::require_redis("redis e2e: auth") {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.conn();
    assert_eq!(
        c.cmd(&[
            "ACL",
            "SETUSER",
            "spool",
            "on",
            ">acl-pw-9",
            "~*",
            "&*",
            "+@all"
        ])
        .expect("acl"),
        Reply::Status("OK".into())
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "requirepass", "main-pw-7"])
            .expect("requirepass"),
        Reply::Status("OK".into())
    );
    let port = server.port;
    for url in [
        format!("redis://:main-pw-7@127.0.0.1:{port}/?prefix=auth-default"),
        format!("redis://spool:acl-pw-9@127.0.0.1:{port}/?prefix=auth-acl"),
    ] {
        runs_a_job_and_prints_no(&url, "-pw-");
    }
    let out = spool_tests::daemon_output(
        &format!("redis://spool:wrong-pw@127.0.0.1:{port}/?prefix=auth-bad"),
        Duration::from_secs(10),
    );
    assert!(!out.contains("wrong-pw"), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains("password") || lower.contains("auth"),
        "a wrong password says what is wrong: {out}"
    );
}

#[test]
fn one_daemons_event_stream_shows_jobs_another_daemon_ran() {
    if !redis::require_redis("redis e2e: events across daemons") {
        return;
    }
    use std::io::{Read, Write};
    let server = Server::start(&[]);
    let url = server.url("events-across");
    // A has no plugin: every job it sees finish ran on B.
    let a = Daemon::builder(&[]).storage(&url).start();
    let b = Daemon::builder(&["echo"]).storage(&url).start();
    let addr = a.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect to A");
    stream
        .write_all(format!("GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("subscribe");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // The stream is open once its headers arrived.
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + LONG;
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") && Instant::now() < deadline {
        if let Ok(n) = stream.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
    }
    let job = b.submit(&json!({"type": "echo", "payload": {"from": "b"}}));
    let id = job["id"].as_str().expect("id").to_string();
    b.wait_status(&id, "completed", LONG);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if text.contains("job.completed") && text.contains(&id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A's stream never showed B's job {id}: {text}"
        );
        if let Ok(n) = stream.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
    }
}

#[test]
fn a_sentinel_that_requires_a_password_serves_daemons_and_a_wrong_one_says_so() {
    if !redis::require_redis("redis e2e: sentinel auth") {
        return;
    }
    let set = SentinelSet::start_with_passwords("data-secret-3", "sentinel-secret-5");
    let url = set.url("sentinel-auth");
    runs_a_job_and_prints_no(&url, "-secret-");

    let wrong = url.replace("sentinel-secret-5", "wrong-secret-1");
    let out = spool_tests::daemon_output(&wrong, Duration::from_secs(15));
    assert!(!out.contains("-secret-"), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains("password") || lower.contains("auth"),
        "a wrong Sentinel password says what is wrong: {out}\n{}",
        set.logs()
    );
}

/// A Redis at its memory limit (`noeviction`) still answers pings and reads, but every claim
/// fails: the daemon looks connected, yet consumes nothing. `/health` must say so, and stop
/// saying so once claims work again.
#[test]
fn health_says_connected_but_not_consuming_when_claims_keep_failing() {
    if !redis::require_redis("redis e2e: connected but not consuming") {
        return;
    }
    let server = Server::start(&[]);
    // No plugin yet: the pending jobs are nobody's work, so nothing is stalled.
    let d = Daemon::builder(&[])
        .storage(&server.url("stall"))
        .config("[api]\nstall_after = \"2s\"\n")
        .start();
    let jobs: Vec<Value> = (0..5)
        .map(|i| json!({"type": "echo", "payload": {"i": i}}))
        .collect();
    let ids = d.submit_batch(&jobs);
    let h = d.get("/health");
    assert_eq!(h.body["consuming"]["stalled"], false, "{}", h.body);

    // Below what is in use: every write is refused with OOM; reads and PING still answer.
    let mut c = server.conn();
    let info = c.cmd(&["INFO", "memory"]).expect("info").text();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    let limit = (used / 2).to_string();
    for args in [
        ["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        ["CONFIG", "SET", "maxmemory", limit.as_str()],
    ] {
        assert_eq!(c.cmd(&args).expect("config"), Reply::Status("OK".into()));
    }
    spool_tests::install_plugins(&d.plugins, &["echo"]);

    eventually_blocking("health to say connected but not consuming", LONG, || {
        let h = d.get("/health");
        h.body["consuming"]["stalled"] == true
    });
    let h = d.get("/health");
    assert_eq!(h.status, 200, "degraded still serves: {}", h.body);
    assert_eq!(h.body["status"], "degraded", "{}", h.body);
    assert_eq!(
        h.body["consuming"]["stalled_types"],
        json!(["echo"]),
        "{}",
        h.body
    );
    let reasons = h.body["reasons"].to_string();
    assert!(
        reasons.contains("connected but not consuming") && reasons.contains("`echo`"),
        "{reasons}"
    );

    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory", "0"]).expect("config"),
        Reply::Status("OK".into())
    );
    for id in &ids {
        d.wait_status(id, "completed", LONG);
    }
    eventually_blocking("health to stop saying stalled", LONG, || {
        d.get("/health").body["consuming"]["stalled"] == false
    });
}
