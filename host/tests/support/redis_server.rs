//! Throwaway Redis servers for the Redis storage tests: a standalone server, a three-master
//! Cluster and a master + replica + Sentinel set, each on free loopback ports with its own
//! temporary folder, never persisting, and killed when the test process ends (even on a
//! panic or a kill: they get SIGKILL when their parent dies). Never port 6379, never a
//! FLUSHALL: tests use a fresh key prefix each.
//!
//! `SPOOL_TEST_REDIS_URL` points the standalone tests at an existing server instead. When
//! `redis-server` is missing, `CI=true` makes that a failure; otherwise tests print a loud
//! skip message and pass.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first PING (or a Cluster to agree).
const STARTUP: Duration = Duration::from_secs(20);

/// Processes started here; the reaper thread owns them for the life of the process.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

pub fn redis_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether to run: true when redis-server exists; false (with a loud message) when it does
/// not and we are not under CI; a panic under `CI=true`.
pub fn require_redis(what: &str) -> bool {
    if redis_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}: `redis-server` is not installed, and CI=true makes Redis tests mandatory");
    }
    // Straight to the stderr file: libtest captures `eprintln!` of passing tests, and this
    // must be seen. Once per test process.
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let _ = std::io::stderr().write_all(
            format!(
                "\n!!! SKIPPED {what}: `redis-server` is not on PATH. Install Redis (apt install \
                 redis-server) to run the Redis storage tests; under CI=true this is a failure.\n\n"
            )
            .as_bytes(),
        );
    });
    false
}

/// A fresh key prefix, so tests sharing a server never see each other's keys.
pub fn fresh_prefix(tag: &str) -> String {
    format!("spooltest-{tag}-{}", uuid::Uuid::new_v4().simple())
}

/// A free loopback port (and, when `bus` is set, port + 10000 free too, for Cluster buses).
pub fn free_port(bus: bool) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        if port == 6379 || (bus && port > 55_000) {
            continue;
        }
        if bus && TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
            continue;
        }
        return port;
    }
}

/// Removes the folders of earlier test processes that are gone (their servers died with
/// them); folder names carry the owning process id.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("spool-redis-test-") else {
            continue;
        };
        let pid = rest
            .split('-')
            .nth(1)
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        // SAFETY: kill(pid, 0) only checks whether the process exists.
        let alive = pid.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if pid.is_some() && !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(remove_stale_dirs);
    let dir = std::env::temp_dir().join(format!(
        "spool-redis-test-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir for redis");
    dir
}

/// Starts `redis-server` with `args` (a config file path first, if any), tied to this
/// process's life, and returns its pid.
fn spawn(args: &[String], dir: &Path) -> u32 {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join("stdout.log")).expect("create redis log");
    let mut cmd = Command::new("redis-server");
    cmd.args(args)
        .current_dir(dir)
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    // SIGKILL the server when the thread that spawned it exits; the spawning thread is the
    // reaper thread below, which lives until the process ends.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn redis-server");
    let pid = child.id();
    CHILDREN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(child);
    pid
}

/// Runs `f` on a thread that lives as long as the process, so PDEATHSIG fires only at exit.
fn on_reaper_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static REAPER: OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
    let sender = REAPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("redis-reaper".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
                // The channel is never closed (the sender is static): park for good.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the reaper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = std::sync::mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .expect("reaper thread is alive");
    rx.recv().expect("reaper thread answered")
}

/// Sends one command in RESP and returns the raw reply text (enough for PING, INFO, ...).
pub fn command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first)?;
    if let Some(len) = first.strip_prefix('$') {
        let len: i64 = len.trim().parse().unwrap_or(-1);
        if len < 0 {
            return Ok(String::new());
        }
        let mut body = vec![0u8; len as usize + 2];
        r.read_exact(&mut body)?;
        body.truncate(len as usize);
        return Ok(String::from_utf8_lossy(&body).into_owned());
    }
    Ok(first.trim_end().to_owned())
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not happen within {STARTUP:?}");
}

fn wait_for_ping(port: u16) {
    wait_until(&format!("redis on port {port} answering PING"), || {
        command(port, &["PING"]).is_ok_and(|r| r == "+PONG")
    });
}

fn base_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
        "--logfile",
        "redis.log",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// One standalone server.
#[derive(Debug, Clone)]
pub struct Standalone {
    pub port: u16,
    pub pid: u32,
    pub dir: PathBuf,
    args: Vec<String>,
}

impl Standalone {
    pub fn start(extra: &[&str]) -> Standalone {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        on_reaper_thread(move || {
            let port = free_port(false);
            let dir = temp_dir("standalone");
            let mut args = base_args(port, &dir);
            args.extend(extra);
            let pid = spawn(&args, &dir);
            wait_for_ping(port);
            Standalone {
                port,
                pid,
                dir,
                args,
            }
        })
    }

    /// A port and folder for a server that is not started yet (`start_again` starts it):
    /// for tests of a daemon that starts while Redis is down.
    pub fn not_started(extra: &[&str]) -> Standalone {
        let port = free_port(false);
        let dir = temp_dir("standalone");
        let mut args = base_args(port, &dir);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Standalone {
            port,
            pid: 0,
            dir,
            args,
        }
    }

    /// Starts the server (again) on its port, folder and flags; it reloads its AOF if it
    /// has one.
    pub fn start_again(&mut self) {
        let (args, dir, port) = (self.args.clone(), self.dir.clone(), self.port);
        self.pid = on_reaper_thread(move || {
            let pid = spawn(&args, &dir);
            wait_for_ping(port);
            pid
        });
    }

    /// SIGKILL (a crash); returns once the port refuses connections.
    pub fn kill9(&mut self) {
        if self.pid != 0 {
            // SAFETY: plain kill(2) on a pid this process spawned.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
            self.pid = 0;
        }
        self.wait_gone();
    }

    /// `SHUTDOWN NOSAVE`: a clean stop that writes no snapshot (with AOF on, the AOF holds
    /// every acknowledged write).
    pub fn shutdown_nosave(&mut self) {
        let _ = command(self.port, &["SHUTDOWN", "NOSAVE"]);
        self.pid = 0;
        self.wait_gone();
    }

    fn wait_gone(&self) {
        let port = self.port;
        wait_until(&format!("redis on port {port} to go away"), || {
            TcpStream::connect(("127.0.0.1", port)).is_err()
        });
    }

    /// Kills the server with SIGKILL (a crash) and starts it again on the same port and
    /// folder (empty, unless AOF is on).
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    pub fn url(&self, prefix: &str) -> String {
        format!(
            "redis://127.0.0.1:{}/?prefix={prefix}&clock=local",
            self.port
        )
    }
}

/// The standalone server shared by one test binary (or `SPOOL_TEST_REDIS_URL`): the base
/// URL without options, or None when the tests must be skipped.
pub fn shared_standalone_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SPOOL_TEST_REDIS_URL") {
            return Some(url);
        }
        if !require_redis("redis storage tests") {
            return None;
        }
        Some(format!("redis://127.0.0.1:{}", Standalone::start(&[]).port))
    })
    .clone()
}

/// Three distinct free ports, each with its Cluster bus port (+10000) free too.
fn cluster_ports() -> Vec<u16> {
    cluster_ports_n(3)
}

fn cluster_ports_n(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = free_port(true);
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

/// A three-master Cluster, without replicas (`start`) or with one replica per master
/// (`start_replicated`: six nodes, a short node timeout so a failover comes in seconds).
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Every node, masters and replicas, as created (`redis-cli --cluster create` makes the
    /// first three masters).
    pub ports: Vec<u16>,
    pids: Vec<u32>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(0, "5000")
    }

    pub fn start_replicated() -> Cluster {
        Self::start_with(1, "1500")
    }

    fn start_with(replicas: usize, node_timeout: &'static str) -> Cluster {
        on_reaper_thread(move || {
            let dir = temp_dir("cluster");
            let ports = cluster_ports_n(3 * (1 + replicas));
            let mut pids = Vec::new();
            for &p in &ports {
                let node_dir = dir.join(p.to_string());
                std::fs::create_dir_all(&node_dir).expect("node dir");
                let mut args = base_args(p, &node_dir);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        node_timeout,
                    ]
                    .map(str::to_owned),
                );
                pids.push(spawn(&args, &node_dir));
            }
            for &p in &ports {
                wait_for_ping(p);
            }
            let mut create = Command::new("redis-cli");
            create.arg("--cluster").arg("create");
            for &p in &ports {
                create.arg(format!("127.0.0.1:{p}"));
            }
            let out = create
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
                .output()
                .expect("run redis-cli --cluster create");
            assert!(
                out.status.success(),
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            for &p in &ports {
                wait_until(
                    &format!("cluster node {p} reporting cluster_state:ok"),
                    || {
                        command(p, &["CLUSTER", "INFO"])
                            .is_ok_and(|i| i.contains("cluster_state:ok"))
                    },
                );
            }
            let cluster = Cluster { ports, pids };
            for &p in &cluster.ports {
                if cluster.role(p).as_deref() == Some("slave") {
                    wait_until(&format!("replica {p} in sync"), || {
                        command(p, &["INFO", "replication"])
                            .is_ok_and(|i| i.contains("master_link_status:up"))
                    });
                }
            }
            cluster
        })
    }

    /// `master` or `slave`, as the node says of itself.
    pub fn role(&self, port: u16) -> Option<String> {
        let info = command(port, &["INFO", "replication"]).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("role:"))
            .map(|r| r.trim().to_owned())
    }

    /// The port of the master serving `key`'s slot, as a live node reports it.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let slot: u16 = self.ports.iter().find_map(|&p| {
            command(p, &["CLUSTER", "KEYSLOT", key])
                .ok()?
                .trim_start_matches(':')
                .parse()
                .ok()
        })?;
        self.ports.iter().copied().find(|&p| {
            self.role(p).as_deref() == Some("master")
                && command(p, &["CLUSTER", "NODES"]).is_ok_and(|nodes| {
                    nodes
                        .lines()
                        .any(|l| l.contains("myself") && l.contains("master") && owns_slot(l, slot))
                })
        })
    }

    /// SIGKILL for the node on `port` (no shutdown, no last write).
    pub fn kill9(&self, port: u16) {
        if let Some(i) = self.ports.iter().position(|&p| p == port) {
            // SAFETY: plain kill(2) on a pid this process spawned.
            unsafe {
                libc::kill(self.pids[i] as libc::pid_t, libc::SIGKILL);
            }
        }
    }

    pub fn url(&self, prefix: &str) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "redis+cluster://{}/?prefix={prefix}&clock=local",
            nodes.join(",")
        )
    }
}

/// A master, one replica and one Sentinel watching them as `spoolmaster`.
#[derive(Debug, Clone)]
pub struct SentinelSet {
    pub master: u16,
    pub replica: u16,
    pub sentinel: u16,
}

pub const MASTER_NAME: &str = "spoolmaster";

impl SentinelSet {
    pub fn start() -> SentinelSet {
        on_reaper_thread(|| {
            let dir = temp_dir("sentinel");
            let (master, replica, sentinel) = start_sentinel_set(&dir, false);
            SentinelSet {
                master,
                replica,
                sentinel,
            }
        })
    }

    pub fn url(&self, prefix: &str) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER_NAME}?prefix={prefix}&clock=local",
            self.sentinel
        )
    }

    /// The port the Sentinel currently calls master.
    pub fn current_master(&self) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.sentinel)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let req = format!(
            "*3\r\n$8\r\nSENTINEL\r\n$23\r\nGET-MASTER-ADDR-BY-NAME\r\n${}\r\n{MASTER_NAME}\r\n",
            MASTER_NAME.len()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut lines = Vec::new();
        for _ in 0..5 {
            let mut l = String::new();
            r.read_line(&mut l).ok()?;
            lines.push(l.trim_end().to_owned());
        }
        lines.get(4)?.parse().ok()
    }
}

/// Starts a master, its replica and a Sentinel watching them as `MASTER_NAME`, each in a
/// folder of `dir`, and waits until the replica is in sync and the Sentinel knows it; returns
/// their ports. With `tls` every one of them speaks only TLS (`port 0`, `tls-port`,
/// `tls-replication yes`), with the `ca.pem` and `server.pem`/`server.key` already in `dir`.
fn start_sentinel_set(dir: &Path, tls: bool) -> (u16, u16, u16) {
    let file = |f: &str| dir.join(f).display().to_string();
    let tls_settings = [
        ("tls-replication", "yes".to_owned()),
        ("tls-cert-file", file("server.pem")),
        ("tls-key-file", file("server.key")),
        ("tls-ca-cert-file", file("ca.pem")),
        ("tls-auth-clients", "no".to_owned()),
    ];
    let ask = |port: u16, args: &[&str]| -> Option<String> {
        if tls {
            let mut all = vec!["-p".to_owned(), port.to_string()];
            all.extend(args.iter().map(|a| (*a).to_owned()));
            tls_cli(dir, &all)
        } else {
            command(port, args).ok()
        }
    };
    let (master, replica, sentinel) = (free_port(false), free_port(false), free_port(false));
    for (port, extra) in [
        (master, vec![]),
        (
            replica,
            vec![
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master.to_string(),
            ],
        ),
    ] {
        let node_dir = dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let mut args = base_args(if tls { 0 } else { port }, &node_dir);
        if tls {
            args.extend(["--tls-port".to_owned(), port.to_string()]);
            for (k, v) in &tls_settings {
                args.extend([format!("--{k}"), v.clone()]);
            }
        }
        args.extend(extra);
        spawn(&args, &node_dir);
        wait_until(&format!("redis on port {port} answering PING"), || {
            ask(port, &["PING"]).is_some_and(|r| r.contains("PONG"))
        });
    }
    wait_until("the replica in sync with the master", || {
        ask(replica, &["INFO", "replication"]).is_some_and(|i| i.contains("master_link_status:up"))
    });
    let sdir = dir.join("sentinel");
    std::fs::create_dir_all(&sdir).expect("sentinel dir");
    let conf = sdir.join("sentinel.conf");
    let mut text = if tls {
        let mut t = format!("port 0\ntls-port {sentinel}\n");
        for (k, v) in &tls_settings {
            t.push_str(&format!("{k} {v}\n"));
        }
        t
    } else {
        format!("port {sentinel}\n")
    };
    text.push_str(&format!(
        "bind 127.0.0.1\ndir {}\nlogfile sentinel.log\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n\
         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
         sentinel failover-timeout {MASTER_NAME} 5000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n",
        sdir.display()
    ));
    std::fs::write(&conf, text).expect("write sentinel.conf");
    spawn(
        &[conf.display().to_string(), "--sentinel".to_owned()],
        &sdir,
    );
    // Plain: the raw reply's first line (`*0` = none); TLS: redis-cli's text (empty = none).
    wait_until("the sentinel to know the replica", || {
        ask(sentinel, &["SENTINEL", "REPLICAS", MASTER_NAME])
            .is_some_and(|r| !r.trim().is_empty() && !r.starts_with("*0"))
    });
    (master, replica, sentinel)
}

/// Runs `openssl` with `args` in `dir`; Err carries its output when it fails.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run `openssl` ({e}): install it (apt install openssl)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`openssl {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes a throwaway CA in `dir` (`{name}.pem`, `{name}.key`); returns the certificate path.
pub fn make_ca(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            &format!("/CN=spool test {name}"),
        ],
    )?;
    Ok(dir.join(cert))
}

/// Makes `{name}.pem` + `{name}.key` in `dir`, signed by the CA `{ca}.pem`/`{ca}.key` there;
/// `server` certificates name 127.0.0.1 and localhost, others are client certificates.
pub fn make_signed_cert(dir: &Path, ca: &str, name: &str, server: bool) -> Result<(), String> {
    let (cert, key, csr, ext) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN=spool test {name}"),
        ],
    )?;
    let usage = if server {
        // clientAuth too: Cluster nodes present it to each other on the TLS bus.
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
    };
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n{usage}"),
    )
    .map_err(|e| format!("cannot write {ext}: {e}"))?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    )
}

/// A standalone server that speaks only TLS (`--port 0`), with a throwaway CA (`ca.pem`)
/// and a server certificate for 127.0.0.1/localhost in `dir`; `client_auth` makes it
/// require a client certificate from that CA (`client.pem`/`client.key` are made too).
#[derive(Debug, Clone)]
pub struct TlsStandalone {
    pub tls_port: u16,
    pub pid: u32,
    pub dir: PathBuf,
}

impl TlsStandalone {
    /// Err says what is missing: `openssl`, or TLS in this `redis-server` build.
    pub fn start(client_auth: bool) -> Result<TlsStandalone, String> {
        on_reaper_thread(move || {
            let dir = temp_dir("tls");
            make_ca(&dir, "ca")?;
            make_signed_cert(&dir, "ca", "server", true)?;
            make_signed_cert(&dir, "ca", "client", false)?;
            let tls_port = free_port(false);
            let mut args = base_args(0, &dir);
            let auth = if client_auth { "yes" } else { "no" };
            for (k, v) in [
                ("--tls-port", tls_port.to_string()),
                ("--tls-cert-file", "server.pem".into()),
                ("--tls-key-file", "server.key".into()),
                ("--tls-ca-cert-file", "ca.pem".into()),
                ("--tls-auth-clients", auth.into()),
            ] {
                args.push(k.into());
                args.push(v);
            }
            let pid = spawn(&args, &dir);
            let deadline = Instant::now() + STARTUP;
            loop {
                if TcpStream::connect(("127.0.0.1", tls_port)).is_ok() {
                    return Ok(TlsStandalone { tls_port, pid, dir });
                }
                let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                let logs = format!("{}{}", log("stdout.log"), log("redis.log"));
                // A server that refuses its options (no TLS in this build) exits at once and
                // stays a zombie of the reaper thread: look at its state, not kill(pid, 0).
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let exited = stat
                    .rsplit_once(')')
                    .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'));
                if exited {
                    return Err(format!(
                        "redis-server exited at startup with TLS options (a build without TLS \
                         support?): {}",
                        logs.trim()
                    ));
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "redis-server with TLS on port {tls_port} did not start within \
                         {STARTUP:?}: {}",
                        logs.trim()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `rediss://` to this server with `ca=` its CA, a fresh-prefix store in clock=local mode.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "rediss://127.0.0.1:{}/?ca={}&prefix={prefix}&clock=local",
            self.tls_port,
            self.file("ca.pem")
        )
    }
}

/// `redis-cli --tls` against a TLS-only server whose CA is `dir/ca.pem`: its output, or None
/// when it could not run or failed.
fn tls_cli(dir: &Path, args: &[String]) -> Option<String> {
    // `timeout`: `--cluster create` waits for ever for nodes that cannot meet.
    let out = Command::new("timeout")
        .arg("60")
        .arg("redis-cli")
        .arg("--tls")
        .arg("--cacert")
        .arg(dir.join("ca.pem"))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A three-master Cluster that speaks only TLS (`--port 0`, `tls-cluster yes`, so the nodes
/// announce their TLS ports and talk TLS on the bus), with a throwaway CA (`ca.pem`) and a
/// server certificate for 127.0.0.1/localhost in `dir`.
#[derive(Debug, Clone)]
pub struct TlsCluster {
    pub ports: Vec<u16>,
    pub dir: PathBuf,
}

impl TlsCluster {
    /// Err says what is missing: `openssl`, or TLS in this `redis-server` build.
    pub fn start() -> Result<TlsCluster, String> {
        on_reaper_thread(|| {
            let dir = temp_dir("tlscluster");
            make_ca(&dir, "ca")?;
            make_signed_cert(&dir, "ca", "server", true)?;
            let ports = cluster_ports();
            for &p in &ports {
                let node_dir = dir.join(p.to_string());
                std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
                let mut args = base_args(0, &node_dir);
                let file = |f: &str| dir.join(f).display().to_string();
                for (k, v) in [
                    ("--tls-port", p.to_string()),
                    ("--tls-cluster", "yes".into()),
                    ("--tls-cert-file", file("server.pem")),
                    ("--tls-key-file", file("server.key")),
                    ("--tls-ca-cert-file", file("ca.pem")),
                    ("--tls-auth-clients", "no".into()),
                    ("--cluster-enabled", "yes".into()),
                    ("--cluster-config-file", "nodes.conf".into()),
                    ("--cluster-node-timeout", "5000".into()),
                ] {
                    args.push(k.into());
                    args.push(v);
                }
                spawn(&args, &node_dir);
            }
            for &p in &ports {
                let ping = ["-p".to_owned(), p.to_string(), "PING".to_owned()];
                wait_until(&format!("tls cluster node {p} answering PING"), || {
                    tls_cli(&dir, &ping).is_some_and(|o| o.contains("PONG"))
                });
            }
            let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
            create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
            create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(str::to_owned));
            tls_cli(&dir, &create).ok_or("redis-cli --tls --cluster create failed")?;
            for &p in &ports {
                let info = [
                    "-p".to_owned(),
                    p.to_string(),
                    "CLUSTER".into(),
                    "INFO".into(),
                ];
                wait_until(
                    &format!("tls cluster node {p} reporting cluster_state:ok"),
                    || tls_cli(&dir, &info).is_some_and(|o| o.contains("cluster_state:ok")),
                );
            }
            Ok(TlsCluster { ports, dir })
        })
    }

    /// `rediss+cluster://` to two of the nodes with `ca=` the CA, in clock=local mode.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "rediss+cluster://127.0.0.1:{},127.0.0.1:{}/?ca={}&prefix={prefix}&clock=local",
            self.ports[0],
            self.ports[1],
            self.dir.join("ca.pem").display()
        )
    }
}

/// A master, one replica and one Sentinel as in `SentinelSet`, every one of them TLS-only
/// (`port 0`, `tls-port`), replicating over TLS, with a throwaway CA in `dir`.
#[derive(Debug, Clone)]
pub struct TlsSentinelSet {
    pub master: u16,
    pub replica: u16,
    pub sentinel: u16,
    pub dir: PathBuf,
}

impl TlsSentinelSet {
    /// Err says what is missing: `openssl`, or TLS in this `redis-server` build.
    pub fn start() -> Result<TlsSentinelSet, String> {
        on_reaper_thread(|| {
            let dir = temp_dir("tlssentinel");
            make_ca(&dir, "ca")?;
            make_signed_cert(&dir, "ca", "server", true)?;
            let (master, replica, sentinel) = start_sentinel_set(&dir, true);
            Ok(TlsSentinelSet {
                master,
                replica,
                sentinel,
                dir,
            })
        })
    }

    /// `rediss+sentinel://` with `ca=` the CA, in clock=local mode.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "rediss+sentinel://127.0.0.1:{}/{MASTER_NAME}?ca={}&prefix={prefix}&clock=local",
            self.sentinel,
            self.dir.join("ca.pem").display()
        )
    }

    /// `redis-cli --tls` with this set's CA against `port`; its output, or None.
    pub fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let mut all = vec!["-p".to_owned(), port.to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        tls_cli(&self.dir, &all)
    }
}

/// Whether to run the TLS tests: needs `redis-server` and `openssl`; a missing one is a
/// loud skip, or a panic under `CI=true`.
pub fn require_tls_tools(what: &str) -> bool {
    if !require_redis(what) {
        return false;
    }
    let openssl = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if openssl {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}: `openssl` is not installed, and CI=true makes the TLS tests mandatory");
    }
    let _ = std::io::stderr().write_all(
        format!(
            "\n!!! SKIPPED {what}: `openssl` is not on PATH (apt install openssl); under CI=true \
             this is a failure.\n\n"
        )
        .as_bytes(),
    );
    false
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges (`0-5460 5461 ...`).
fn owns_slot(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|range| {
        let mut ends = range.splitn(2, '-').map(|v| v.parse::<u16>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
            (Some(Ok(a)), None) => a == slot,
            _ => false,
        }
    })
}
