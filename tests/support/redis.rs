//! Throwaway Redis servers for the end-to-end tests (tests/redis_e2e.rs): a standalone server
//! (optionally with AOF, restartable on the same port and folder) and a master + replica +
//! Sentinel set, on free loopback ports (never 6379), each in its own temporary folder. They
//! get SIGKILL when the thread that started them ends (PR_SET_DEATHSIG) and on drop, so a
//! failed test leaves nothing running. A tiny RESP client (`Redis::cmd`) talks to them.
//!
//! When `redis-server` is missing: a failure under `CI=true`, a loud skip otherwise
//! (`require_redis`).

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first PING.
const STARTUP: Duration = Duration::from_secs(20);

/// True when `redis-server` is installed. Without it: panics under `CI=true`, else prints a
/// loud skip message (straight to stderr, which libtest does not capture) and returns false.
pub fn require_redis(what: &str) -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}: `redis-server` is not installed, and CI=true makes Redis tests mandatory");
    }
    let _ = std::io::stderr().write_all(
        format!(
            "\n!!! SKIPPED {what}: `redis-server` is not on PATH. Install Redis (apt install \
             redis-server) to run the Redis end-to-end tests; under CI=true this is a failure.\n\n"
        )
        .as_bytes(),
    );
    false
}

/// A free loopback port other than 6379.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        if port != 6379 {
            return port;
        }
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (status, bulk or integer); panics otherwise.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) => String::new(),
            other => panic!("not a text reply: {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("not an integer reply: {other:?}"),
        }
    }

    pub fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(v)) => v.clone(),
            Reply::Array(None) => Vec::new(),
            other => panic!("not an array reply: {other:?}"),
        }
    }
}

/// One connection speaking RESP2.
pub struct Redis {
    r: BufReader<TcpStream>,
}

impl Redis {
    pub fn connect(port: u16) -> Result<Redis> {
        let s = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connect to redis on port {port}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Redis {
            r: BufReader::new(s),
        })
    }

    /// Sends one command (binary-safe arguments) and reads its reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.r.get_mut().write_all(&req)?;
        read_reply(&mut self.r)
    }

    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd_bytes(&a)
    }
}

/// One command on a fresh connection.
pub fn command(port: u16, args: &[&str]) -> Result<Reply> {
    Redis::connect(port)?.cmd(args)
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("redis closed the connection");
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse()?),
        "$" => {
            let len: i64 = rest.parse()?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let mut body = vec![0u8; len as usize + 2];
                r.read_exact(&mut body)?;
                body.truncate(len as usize);
                Reply::Bulk(Some(body))
            }
        }
        "*" => {
            let len: i64 = rest.parse()?;
            if len < 0 {
                Reply::Array(None)
            } else {
                let mut v = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    v.push(read_reply(r)?);
                }
                Reply::Array(Some(v))
            }
        }
        _ => bail!("unexpected RESP line {line:?}"),
    })
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
    wait_for_ping_as(port, None);
}

fn wait_for_ping_as(port: u16, password: Option<&str>) {
    wait_until(&format!("redis on port {port} answering PING"), || {
        command_as(port, password, &["PING"]).is_ok_and(|r| r == Reply::Status("PONG".into()))
    });
}

/// Starts `redis-server ARGS` in `dir`, logging to dir/stdout.log; SIGKILLed when the calling
/// thread ends.
fn spawn(args: &[String], dir: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join("stdout.log")).expect("create redis log");
    let mut cmd = Command::new("redis-server");
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log);
    // SAFETY: prctl in the forked child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().expect("spawn redis-server")
}

fn base_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--dir",
        &dir.display().to_string(),
        "--logfile",
        "redis.log",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One standalone server.
pub struct Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    /// A server without persistence, plus `extra` flags (e.g. `["--appendonly", "yes"]`).
    pub fn start(extra: &[&str]) -> Server {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut args = base_args(port, dir.path());
        if !extra.contains(&"--appendonly") {
            args.extend(["--appendonly".to_owned(), "no".to_owned()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let child = spawn(&args, dir.path());
        wait_for_ping(port);
        Server {
            port,
            dir,
            args,
            child: Some(child),
        }
    }

    /// SIGKILL (a crash); returns once the port refuses connections.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
        let port = self.port;
        wait_until(
            &format!("the killed redis on port {port} to go away"),
            || TcpStream::connect(("127.0.0.1", port)).is_err(),
        );
    }

    /// Starts the server again on the same port, folder and flags (it reloads its AOF).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the server before restarting it");
        self.child = Some(spawn(&self.args, self.dir.path()));
        wait_for_ping(self.port);
        wait_until("redis to finish loading", || {
            command(self.port, &["INFO", "persistence"])
                .is_ok_and(|r| r.text().contains("loading:0"))
        });
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("redis://127.0.0.1:{}/?prefix={prefix}", self.port)
    }

    /// `SHUTDOWN NOSAVE` (a clean stop that writes no snapshot; with AOF on, the AOF already
    /// holds every acknowledged write). `restart` brings it back.
    pub fn shutdown_nosave(&mut self) {
        let _ = command(self.port, &["SHUTDOWN", "NOSAVE"]);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    pub fn conn(&self) -> Redis {
        Redis::connect(self.port).expect("connect to the test redis")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

pub const MASTER_NAME: &str = "mymaster";

/// A master, one replica and one Sentinel watching them as `mymaster`.
pub struct SentinelSet {
    pub master: u16,
    pub replica: u16,
    pub sentinel: u16,
    pub dir: tempfile::TempDir,
    /// `requirepass` of the data nodes and of the Sentinel, when started with passwords.
    passwords: Option<(String, String)>,
    children: Vec<Child>,
}

/// One command on a fresh connection, after `AUTH password` when one is given.
pub fn command_as(port: u16, password: Option<&str>, args: &[&str]) -> Result<Reply> {
    let mut c = Redis::connect(port)?;
    if let Some(pw) = password {
        match c.cmd(&["AUTH", pw])? {
            Reply::Status(_) => {}
            other => bail!("AUTH on port {port}: {other:?}"),
        }
    }
    c.cmd(args)
}

impl SentinelSet {
    pub fn start() -> SentinelSet {
        Self::start_with(None)
    }

    /// Data nodes that require `data` (`requirepass`, `masterauth`) and a Sentinel that
    /// requires `sentinel` of its clients and uses `data` to reach the nodes.
    pub fn start_with_passwords(data: &str, sentinel: &str) -> SentinelSet {
        Self::start_with(Some((data.to_owned(), sentinel.to_owned())))
    }

    fn start_with(passwords: Option<(String, String)>) -> SentinelSet {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let (master, replica, sentinel) = (free_port(), free_port(), free_port());
        let data_pw = passwords.as_ref().map(|(d, _)| d.clone());
        let sentinel_pw = passwords.as_ref().map(|(_, s)| s.clone());
        let mut children = Vec::new();
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
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut args = base_args(port, &node_dir);
            args.extend(["--appendonly".to_owned(), "no".to_owned()]);
            if let Some(pw) = &data_pw {
                args.extend([
                    "--requirepass".to_owned(),
                    pw.clone(),
                    "--masterauth".to_owned(),
                    pw.clone(),
                ]);
            }
            args.extend(extra);
            children.push(spawn(&args, &node_dir));
            wait_for_ping_as(port, data_pw.as_deref());
        }
        wait_until("the replica in sync with the master", || {
            command_as(replica, data_pw.as_deref(), &["INFO", "replication"])
                .is_ok_and(|i| i.text().contains("master_link_status:up"))
        });
        let sdir = dir.path().join("sentinel");
        std::fs::create_dir_all(&sdir).expect("sentinel dir");
        let conf = sdir.join("sentinel.conf");
        let mut text = format!(
            "port {sentinel}\nbind 127.0.0.1\ndir {}\nlogfile sentinel.log\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            sdir.display()
        );
        if let (Some(d), Some(s)) = (&data_pw, &sentinel_pw) {
            text.push_str(&format!(
                "sentinel auth-pass {MASTER_NAME} {d}\nrequirepass {s}\n"
            ));
        }
        std::fs::write(&conf, text).expect("write sentinel.conf");
        children.push(spawn(
            &[conf.display().to_string(), "--sentinel".to_owned()],
            &sdir,
        ));
        wait_for_ping_as(sentinel, sentinel_pw.as_deref());
        wait_until("the sentinel to know the replica", || {
            command_as(
                sentinel,
                sentinel_pw.as_deref(),
                &["SENTINEL", "REPLICAS", MASTER_NAME],
            )
            .is_ok_and(|r| !r.items().is_empty())
        });
        SentinelSet {
            master,
            replica,
            sentinel,
            dir,
            passwords,
            children,
        }
    }

    fn data_password(&self) -> Option<&str> {
        self.passwords.as_ref().map(|(d, _)| d.as_str())
    }

    fn sentinel_password(&self) -> Option<&str> {
        self.passwords.as_ref().map(|(_, s)| s.as_str())
    }

    /// The storage URL of the set; with passwords, the data nodes' one in the user info and
    /// the Sentinel's in `sentinel_password`.
    pub fn url(&self, prefix: &str) -> String {
        match &self.passwords {
            None => format!(
                "redis+sentinel://127.0.0.1:{}/{MASTER_NAME}?prefix={prefix}",
                self.sentinel
            ),
            Some((d, s)) => format!(
                "redis+sentinel://:{d}@127.0.0.1:{}/{MASTER_NAME}?prefix={prefix}&sentinel_password={s}",
                self.sentinel
            ),
        }
    }

    /// Fails the master over to the replica and returns once the replica is master and the
    /// old master has been demoted (so no write can land on it in the moment both think they
    /// are master). Right after start the Sentinel may not have heard from the replica yet
    /// (NOGOODSLAVE): it is asked again until it agrees.
    pub fn failover(&self) {
        wait_until("the sentinel to accept the failover", || {
            command_as(
                self.sentinel,
                self.sentinel_password(),
                &["SENTINEL", "FAILOVER", MASTER_NAME],
            )
            .is_ok_and(|r| r == Reply::Status("OK".into()))
        });
        wait_until("the sentinel to promote the replica", || {
            self.current_master() == Some(self.replica)
        });
        wait_until("the old master to be demoted", || {
            command_as(self.master, self.data_password(), &["INFO", "replication"])
                .is_ok_and(|i| i.text().contains("role:slave"))
        });
    }

    /// The port the Sentinel currently calls master.
    pub fn current_master(&self) -> Option<u16> {
        let r = command_as(
            self.sentinel,
            self.sentinel_password(),
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        )
        .ok()?;
        r.items().get(1)?.text().parse().ok()
    }

    /// Logs of the sentinel and both data nodes, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in [
            PathBuf::from("sentinel").join("sentinel.log"),
            PathBuf::from(self.master.to_string()).join("redis.log"),
            PathBuf::from(self.replica.to_string()).join("redis.log"),
        ] {
            let text = std::fs::read_to_string(self.dir.path().join(&p)).unwrap_or_default();
            out.push_str(&format!("--- {} ---\n{text}", p.display()));
        }
        out
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for c in &mut self.children {
            kill(c);
        }
    }
}
