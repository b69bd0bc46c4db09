//! A `redis-server` for the chaos suite that can be killed and started again on the same
//! port with the same folder. AOF is on with `appendfsync always`, so every write Redis
//! acknowledged survives a `kill -9` of Redis itself. Never port 6379; the server gets
//! SIGKILL when the thread that started it ends (PDEATHSIG) or when this value drops.
//!
//! Missing `redis-server`: a loud skip, or a failure under `CI=true` (like host/tests).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// True when redis-server can run; false with a loud message (a panic under `CI=true`).
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
    eprintln!("\n!!! SKIPPED {what}: `redis-server` is not on PATH (apt install redis-server)\n");
    false
}

fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        if port != 6379 {
            return port;
        }
    }
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        r.restart();
        r
    }

    /// Starts the server (again) on its port and folder; waits for PING.
    pub fn restart(&mut self) {
        use std::os::unix::process::CommandExt;
        assert!(self.child.is_none(), "redis is already running");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--logfile", "redis.log"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl in the child before exec; it only sets the parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("start redis-server"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.command(&["PING"]).is_ok_and(|r| r == "+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis on port {} did not answer PING within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `SHUTDOWN NOSAVE` (no snapshot; the AOF already holds every write).
    pub fn shutdown_nosave(&mut self) {
        let _ = self.command(&["SHUTDOWN", "NOSAVE"]);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// A storage URL with its own key prefix and short timeouts.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "redis://127.0.0.1:{}/?prefix={prefix}&timeout=2s&connect_timeout=1s",
            self.port
        )
    }

    /// One command over RESP; the first reply line (or a bulk string's body).
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}
