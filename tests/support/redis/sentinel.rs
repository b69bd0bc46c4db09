//! A master, one replica and one Sentinel watching them: plain, with passwords, or TLS-only.

use super::dial::Dial;
use super::process::{Proc, STARTUP, base_args, free_port, node_dir, read_log, spawn, temp_dir};
use super::tls::{as_flags, make_certs, tls_settings};
use crate::eventually_blocking;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name the Sentinel knows the master by.
pub const MASTER_NAME: &str = "spoolmaster";

/// How long each step of a failover may take.
const FAILOVER_STEP: Duration = Duration::from_secs(30);

/// A master, one replica and one Sentinel watching them as `MASTER_NAME`, killed on drop.
pub struct SentinelSet {
    pub master: u16,
    pub replica: u16,
    pub sentinel: u16,
    dir: tempfile::TempDir,
    /// `requirepass` of the data nodes and of the Sentinel, when started with passwords.
    passwords: Option<(String, String)>,
    tls: bool,
    /// How to reach the data nodes, and the Sentinel.
    data: Dial,
    watcher: Dial,
    _procs: Vec<Proc>,
}

impl SentinelSet {
    pub fn start() -> SentinelSet {
        Self::start_with(None, false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Data nodes that require `data` (`requirepass`, `masterauth`) and a Sentinel that
    /// requires `sentinel` of its clients and uses `data` to reach the nodes.
    pub fn start_with_passwords(data: &str, sentinel: &str) -> SentinelSet {
        Self::start_with(Some((data.to_owned(), sentinel.to_owned())), false)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every node, the Sentinel too, speaks only TLS (`port 0`, `tls-port`) and replicates
    /// over TLS, with a throwaway CA (`ca.pem` in `dir`) and a server certificate for
    /// 127.0.0.1/localhost. Err says what is missing: `openssl`, or TLS in this
    /// `redis-server` build.
    pub fn start_tls() -> Result<SentinelSet, String> {
        Self::start_with(None, true)
    }

    fn start_with(passwords: Option<(String, String)>, tls: bool) -> Result<SentinelSet, String> {
        let dir = temp_dir(if tls { "tlssentinel" } else { "sentinel" });
        let data_pw = passwords.as_ref().map(|(d, _)| d.as_str());
        let sentinel_pw = passwords.as_ref().map(|(_, s)| s.as_str());
        let (data, watcher) = if tls {
            make_certs(dir.path(), false)?;
            let d = Dial::tls(dir.path().to_path_buf());
            (d.clone(), d)
        } else {
            (Dial::plain(data_pw), Dial::plain(sentinel_pw))
        };
        let (master, replica, sentinel) = (free_port(), free_port(), free_port());
        let mut procs = Vec::new();
        for (port, replica_of) in [(master, None), (replica, Some(master))] {
            let node = node_dir(dir.path(), &port.to_string());
            let mut args = base_args(if tls { 0 } else { port }, &node);
            args.extend(["--appendonly".to_owned(), "no".to_owned()]);
            if tls {
                args.extend(as_flags(&tls_settings(dir.path(), port, false)));
                args.extend(["--tls-replication".to_owned(), "yes".to_owned()]);
            }
            if let Some(pw) = data_pw {
                args.extend(["--requirepass", pw, "--masterauth", pw].map(str::to_owned));
            }
            if let Some(m) = replica_of {
                args.extend([
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    m.to_string(),
                ]);
            }
            procs.push(spawn(&args, &node));
            eventually_blocking(
                &format!("redis on port {port} answering PING"),
                STARTUP,
                || {
                    data.ask(port, &["PING"])
                        .is_some_and(|r| r.contains("PONG"))
                },
            );
        }
        eventually_blocking("the replica in sync with the master", STARTUP, || {
            data.ask(replica, &["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
        });
        let sdir = node_dir(dir.path(), "sentinel");
        let mut conf = if tls {
            let mut c = "port 0\ntls-replication yes\n".to_owned();
            for (k, v) in tls_settings(dir.path(), sentinel, false) {
                c.push_str(&format!("{k} {v}\n"));
            }
            c
        } else {
            format!("port {sentinel}\n")
        };
        conf.push_str(&format!(
            "bind 127.0.0.1\ndir {}\nlogfile sentinel.log\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            sdir.display()
        ));
        if let (Some(d), Some(s)) = (data_pw, sentinel_pw) {
            conf.push_str(&format!(
                "sentinel auth-pass {MASTER_NAME} {d}\nrequirepass {s}\n"
            ));
        }
        let conf_file = sdir.join("sentinel.conf");
        std::fs::write(&conf_file, conf).expect("write sentinel.conf");
        procs.push(spawn(
            &[conf_file.display().to_string(), "--sentinel".to_owned()],
            &sdir,
        ));
        eventually_blocking(
            &format!("the sentinel on port {sentinel} answering PING"),
            STARTUP,
            || {
                watcher
                    .ask(sentinel, &["PING"])
                    .is_some_and(|r| r.contains("PONG"))
            },
        );
        eventually_blocking("the sentinel to know the replica", STARTUP, || {
            watcher
                .ask(sentinel, &["SENTINEL", "REPLICAS", MASTER_NAME])
                .is_some_and(|r| !r.trim().is_empty())
        });
        Ok(SentinelSet {
            master,
            replica,
            sentinel,
            dir,
            passwords,
            tls,
            data,
            watcher,
            _procs: procs,
        })
    }

    /// The storage URL of a store under `prefix`: with passwords, the data nodes' one in the
    /// user info and the Sentinel's in `sentinel_password`; with TLS, `ca=` the CA. It has a
    /// query string: more options follow with `&`.
    pub fn url(&self, prefix: &str) -> String {
        let s = self.sentinel;
        match (&self.passwords, self.tls) {
            (_, true) => format!(
                "rediss+sentinel://127.0.0.1:{s}/{MASTER_NAME}?ca={}&prefix={prefix}",
                self.dir.path().join("ca.pem").display()
            ),
            (None, false) => {
                format!("redis+sentinel://127.0.0.1:{s}/{MASTER_NAME}?prefix={prefix}")
            }
            (Some((d, sp)), false) => format!(
                "redis+sentinel://:{d}@127.0.0.1:{s}/{MASTER_NAME}?prefix={prefix}&sentinel_password={sp}"
            ),
        }
    }

    /// One command to a node of the set (`master`, `replica`) or to the Sentinel: the reply
    /// as `redis-cli` prints it (an integer as its digits, an array one item a line), or None
    /// when the node did not answer or answered an error.
    pub fn ask(&self, port: u16, args: &[&str]) -> Option<String> {
        if port == self.sentinel {
            self.watcher.ask(port, args)
        } else {
            self.data.ask(port, args)
        }
    }

    /// Fails the master over to the replica and returns once the replica is master and the
    /// old master has been demoted (so no write can land on it in the moment both think they
    /// are master). Right after start the Sentinel may not have heard from the replica yet
    /// (NOGOODSLAVE): it is asked again until it agrees.
    pub fn failover(&self) {
        eventually_blocking("the sentinel to accept the failover", FAILOVER_STEP, || {
            self.ask(self.sentinel, &["SENTINEL", "FAILOVER", MASTER_NAME])
                .is_some_and(|r| r.trim() == "OK")
        });
        eventually_blocking("the sentinel to promote the replica", FAILOVER_STEP, || {
            self.current_master() == Some(self.replica)
        });
        eventually_blocking("the old master to be demoted", FAILOVER_STEP, || {
            self.ask(self.master, &["INFO", "replication"])
                .is_some_and(|i| i.contains("role:slave"))
        });
    }

    /// The port the Sentinel currently calls master.
    pub fn current_master(&self) -> Option<u16> {
        let r = self.ask(
            self.sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        )?;
        r.lines().nth(1)?.trim().parse().ok()
    }

    /// The set's folder (one folder per node, and the certificates of a TLS set).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Logs of the Sentinel and both data nodes, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in [
            PathBuf::from("sentinel").join("sentinel.log"),
            PathBuf::from(self.master.to_string()).join("redis.log"),
            PathBuf::from(self.replica.to_string()).join("redis.log"),
        ] {
            let text = read_log(self.dir.path(), &p);
            out.push_str(&format!("--- {} ---\n{text}", p.display()));
        }
        out
    }
}
