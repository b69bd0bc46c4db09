//! Starting `redis-server` processes: free ports, temporary folders, the command line every
//! node shares, and a handle that kills its process on drop.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a node may take to answer, a replica to sync or a Cluster to agree.
pub const STARTUP: Duration = Duration::from_secs(20);

/// True under `CI=true`, where a test that cannot get what it needs fails instead of skipping.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `program ARG` runs and succeeds.
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prints a skip message straight to the stderr file: libtest captures `eprintln!` of passing
/// tests, and this must be seen.
fn say_skipped(what: &str, why: &str) {
    let _ = std::io::stderr().write_all(
        format!("\n!!! SKIPPED {what}: {why}; under CI=true this is a failure.\n\n").as_bytes(),
    );
}

/// True when `redis-server` is installed. Without it: panics under `CI=true`, else prints a
/// loud skip message and returns false.
pub fn require_redis(what: &str) -> bool {
    if runs("redis-server", "--version") {
        return true;
    }
    if under_ci() {
        panic!("{what}: `redis-server` is not installed, and CI=true makes Redis tests mandatory");
    }
    say_skipped(
        what,
        "`redis-server` is not on PATH. Install Redis (apt install redis-server) to run the \
         Redis tests",
    );
    false
}

/// `require_redis`, and `openssl` for the throwaway certificates of the TLS tests.
pub fn require_tls_tools(what: &str) -> bool {
    if !require_redis(what) {
        return false;
    }
    if runs("openssl", "version") {
        return true;
    }
    if under_ci() {
        panic!("{what}: `openssl` is not installed, and CI=true makes the TLS tests mandatory");
    }
    say_skipped(what, "`openssl` is not on PATH (apt install openssl)");
    false
}

/// A key prefix no other test (in this process or another one sharing a server) uses.
pub fn fresh_prefix(tag: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process: with the pid and a counter, unique.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    format!("spooltest-{tag}-{}-{:016x}", std::process::id(), h.finish())
}

/// A free loopback port other than 6379, never one this process handed out before: the
/// kernel gives a port back soon after it is freed, and a test that kills a server (a Cluster
/// failover) must not find another test's new server on the dead one's port, answering its
/// client with an empty dataset instead of an error.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if port != 6379 && !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// `n` distinct free ports whose Cluster bus ports (port + 10000) are free too.
pub(crate) fn cluster_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = free_port();
        if p > 55_000 || ports.contains(&p) || TcpListener::bind(("127.0.0.1", p + 10_000)).is_err()
        {
            continue;
        }
        ports.push(p);
    }
    ports
}

/// Folder names start with this, then the kind of server and the owning process id.
const DIR_PREFIX: &str = "spool-redis-test-";

/// Removes the folders of earlier test processes that are gone: a server kept in a `static`
/// lives until its process ends, and its folder outlives it.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
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

/// A fresh temporary folder for servers of `kind` (no `-` in it), removed on drop.
pub(crate) fn temp_dir(kind: &str) -> tempfile::TempDir {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(remove_stale_dirs);
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{kind}-{}-", std::process::id()))
        .tempdir()
        .expect("create a temp dir for redis")
}

/// What every node is started with: loopback only, no snapshots, its folder and log file.
pub(crate) fn base_args(port: u16, dir: &Path) -> Vec<String> {
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

/// A process started here. Dropping it kills it (SIGKILL) and reaps it; when the test process
/// ends first (a server kept in a `static`, a panic, a kill) the process gets SIGKILL too.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
}

impl Proc {
    /// Whether the process has exited (it refused its options, or was killed).
    pub(crate) fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reaps a process that is exiting on its own (after `SHUTDOWN`).
    pub(crate) fn wait(&mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `redis-server ARGS` in `dir` (the arguments may start with a config file), logging
/// its stdout and stderr to `dir/stdout.log`.
pub(crate) fn spawn(args: &[String], dir: &Path) -> Proc {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join("stdout.log")).expect("create redis log");
    let mut cmd = Command::new("redis-server");
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log);
    // SAFETY: prctl in the forked child before exec; async-signal-safe. SIGKILL comes when
    // the thread that forked the child ends: that is the spawner thread below, which lives
    // as long as the process, so a server outlives the test (or the thread) that started it
    // for as long as its handle does.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = on_spawner_thread(move || cmd.spawn()).expect("spawn redis-server");
    Proc { child }
}

/// Runs `f` on a thread that lives as long as the process (see `spawn`).
fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("redis-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
                // The sender is static, so the channel never closes: park for good anyway.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the redis spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = channel();
    sender
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .expect("the spawner thread is alive");
    rx.recv().expect("the spawner thread answered")
}

/// The text of `dir/NAME`, empty when it cannot be read (for failure messages).
pub(crate) fn read_log(dir: &Path, name: impl AsRef<Path>) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// A node's folder inside a set's folder, created.
pub(crate) fn node_dir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("create a node dir");
    d
}
