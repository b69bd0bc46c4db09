//! One standalone server: plain (with any extra flags: AOF, memory limits, ...), or TLS-only.

use super::dial::Dial;
use super::process::{Proc, STARTUP, base_args, free_port, read_log, spawn, temp_dir};
use super::require_redis;
use super::resp::Redis;
use super::tls::{as_flags, make_certs, tls_settings};
use crate::eventually_blocking;
use std::net::TcpStream;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// One standalone server, killed on drop.
pub struct Server {
    /// The port it listens on: plain, or TLS for `start_tls` (which has no plain port).
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    dial: Dial,
    tls: bool,
    proc: Option<Proc>,
}

impl Server {
    /// A server without persistence unless `extra` says otherwise (e.g. `["--appendonly",
    /// "yes"]`), with `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        let mut server = Server::not_started(extra);
        server.restart();
        server
    }

    /// A port and folder for a server that is not running yet: `restart` starts it. For tests
    /// of a daemon that starts while Redis is down.
    pub fn not_started(extra: &[&str]) -> Server {
        let port = free_port();
        let dir = temp_dir("standalone");
        let mut args = base_args(port, dir.path());
        if !extra.contains(&"--appendonly") {
            args.extend(["--appendonly".to_owned(), "no".to_owned()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Server {
            port,
            dir,
            args,
            dial: Dial::plain(None),
            tls: false,
            proc: None,
        }
    }

    /// A server that speaks only TLS, with a throwaway CA (`file("ca.pem")`) and a server
    /// certificate for 127.0.0.1/localhost; `client_auth` makes it require a client
    /// certificate from that CA (`file("client.pem")`, `file("client.key")`). Err says what is
    /// missing: `openssl`, or TLS in this `redis-server` build.
    pub fn start_tls(client_auth: bool) -> Result<Server, String> {
        let dir = temp_dir("tls");
        make_certs(dir.path(), true)?;
        let port = free_port();
        let mut args = base_args(0, dir.path());
        args.extend(as_flags(&tls_settings(dir.path(), port, client_auth)));
        let mut proc = spawn(&args, dir.path());
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let logs = || {
                let text = read_log(dir.path(), "stdout.log") + &read_log(dir.path(), "redis.log");
                text.trim().to_owned()
            };
            if proc.exited() {
                return Err(format!(
                    "redis-server exited at startup with TLS options (a build without TLS \
                     support?): {}",
                    logs()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server with TLS on port {port} did not start within {STARTUP:?}: {}",
                    logs()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let dial = Dial::tls(dir.path().to_path_buf());
        Ok(Server {
            port,
            dir,
            args,
            dial,
            tls: true,
            proc: Some(proc),
        })
    }

    /// Starts the server (again) on its port, folder and flags, and returns once it has
    /// loaded its AOF, if it has one.
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "stop the server before restarting it");
        self.proc = Some(spawn(&self.args, self.dir.path()));
        let port = self.port;
        eventually_blocking(
            &format!("redis on port {port} answering PING"),
            STARTUP,
            || {
                self.dial
                    .ask(port, &["PING"])
                    .is_some_and(|r| r.trim() == "PONG")
            },
        );
        eventually_blocking("redis to finish loading", STARTUP, || {
            self.dial
                .ask(port, &["INFO", "persistence"])
                .is_some_and(|r| r.contains("loading:0"))
        });
    }

    /// SIGKILL (a crash); returns once the port refuses connections.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        self.wait_gone();
    }

    /// A crash (`kill9`), then `restart` on the same port and folder (empty, unless AOF is on).
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        self.restart();
    }

    /// `SHUTDOWN NOSAVE`: a clean stop that writes no snapshot (with AOF on, the AOF already
    /// holds every acknowledged write). `restart` brings it back.
    pub fn shutdown_nosave(&mut self) {
        let _ = self.dial.ask(self.port, &["SHUTDOWN", "NOSAVE"]);
        if let Some(mut p) = self.proc.take() {
            p.wait();
        }
        self.wait_gone();
    }

    fn wait_gone(&self) {
        let port = self.port;
        eventually_blocking(&format!("redis on port {port} to go away"), STARTUP, || {
            TcpStream::connect(("127.0.0.1", port)).is_err()
        });
    }

    /// The storage URL of a store under `prefix` (with `ca=` for a TLS server). It has a query
    /// string: more options follow with `&`.
    pub fn url(&self, prefix: &str) -> String {
        if self.tls {
            format!(
                "rediss://127.0.0.1:{}/?ca={}&prefix={prefix}",
                self.port,
                self.file("ca.pem")
            )
        } else {
            format!("redis://127.0.0.1:{}/?prefix={prefix}", self.port)
        }
    }

    /// A connection to a plain server.
    pub fn conn(&self) -> Redis {
        assert!(!self.tls, "the RESP client speaks no TLS");
        Redis::connect(self.port).expect("connect to the test redis")
    }

    /// The server's log.
    pub fn log(&self) -> String {
        read_log(self.dir.path(), "redis.log")
    }

    /// The server's folder (its log, AOF and certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of a file in the server's folder, e.g. `file("client.pem")`.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// The standalone server shared by a test binary, as a base URL without options
/// (`redis://127.0.0.1:PORT`): `SPOOL_TEST_REDIS_URL` when set, else one started on first use
/// and killed when the test process ends. None when the tests must be skipped
/// (`require_redis`).
pub fn shared_server_url() -> Option<String> {
    static SHARED: OnceLock<Option<(String, Option<Server>)>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Ok(url) = std::env::var("SPOOL_TEST_REDIS_URL") {
                return Some((url, None));
            }
            if !require_redis("redis tests on the shared server") {
                return None;
            }
            let server = Server::start(&[]);
            Some((format!("redis://127.0.0.1:{}", server.port), Some(server)))
        })
        .as_ref()
        .map(|(url, _)| url.clone())
}
