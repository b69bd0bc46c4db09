//! A Redis Cluster of three masters: without replicas, with one replica per master, or
//! TLS-only.

use super::dial::Dial;
use super::process::{Proc, STARTUP, base_args, cluster_ports, node_dir, spawn, temp_dir};
use super::tls::{as_flags, make_certs, tls_settings};
use crate::eventually_blocking;
use std::path::Path;
use std::time::Duration;

/// A Cluster of three masters (and their replicas), killed on drop.
pub struct Cluster {
    /// Every node, masters and replicas, as created (`redis-cli --cluster create` makes the
    /// first three masters).
    pub ports: Vec<u16>,
    dir: tempfile::TempDir,
    dial: Dial,
    tls: bool,
    /// The nodes' processes, in the order of `ports`; None once killed.
    procs: Vec<Option<Proc>>,
}

impl Cluster {
    /// Three masters, no replicas.
    pub fn start() -> Cluster {
        Self::start_with(0, "5000", false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Three masters with one replica each, and a short node timeout so that a failover
    /// comes within seconds.
    pub fn start_replicated() -> Cluster {
        Self::start_with(1, "1500", false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Three masters that speak only TLS (`port 0`, `tls-cluster yes`: the nodes announce
    /// their TLS ports and talk TLS on the bus), with a throwaway CA (`ca.pem` in `dir`) and a
    /// server certificate for 127.0.0.1/localhost. Err says what is missing: `openssl`, or TLS
    /// in this `redis-server` build.
    pub fn start_tls() -> Result<Cluster, String> {
        Self::start_with(0, "5000", true)
    }

    fn start_with(replicas: usize, node_timeout: &str, tls: bool) -> Result<Cluster, String> {
        let dir = temp_dir(if tls { "tlscluster" } else { "cluster" });
        let dial = if tls {
            make_certs(dir.path(), false)?;
            Dial::tls(dir.path().to_path_buf())
        } else {
            Dial::plain(None)
        };
        let ports = cluster_ports(3 * (1 + replicas));
        let mut procs = Vec::new();
        for &p in &ports {
            let node = node_dir(dir.path(), &p.to_string());
            let mut args = base_args(if tls { 0 } else { p }, &node);
            if tls {
                args.extend(as_flags(&tls_settings(dir.path(), p, false)));
                args.extend(["--tls-cluster".to_owned(), "yes".to_owned()]);
            }
            args.extend(
                [
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    node_timeout,
                ]
                .map(str::to_owned),
            );
            procs.push(Some(spawn(&args, &node)));
        }
        for &p in &ports {
            eventually_blocking(&format!("cluster node {p} answering PING"), STARTUP, || {
                dial.ask(p, &["PING"]).is_some_and(|r| r.contains("PONG"))
            });
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend([
            "--cluster-replicas".to_owned(),
            replicas.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        dial.cli(&create)?;
        for &p in &ports {
            eventually_blocking(
                &format!("cluster node {p} reporting cluster_state:ok"),
                STARTUP,
                || {
                    dial.ask(p, &["CLUSTER", "INFO"])
                        .is_some_and(|i| i.contains("cluster_state:ok"))
                },
            );
        }
        let cluster = Cluster {
            ports,
            dir,
            dial,
            tls,
            procs,
        };
        for &p in &cluster.ports {
            if cluster.role(p).as_deref() == Some("slave") {
                eventually_blocking(&format!("replica {p} in sync"), STARTUP, || {
                    cluster
                        .dial
                        .ask(p, &["INFO", "replication"])
                        .is_some_and(|i| i.contains("master_link_status:up"))
                });
            }
        }
        Ok(cluster)
    }

    /// Whether a replica of the master on `master` has every write the master had when this
    /// was called (its replication offset reached the master's), waiting up to `limit`.
    pub fn replica_caught_up(&self, master: u16, limit: Duration) -> bool {
        let field = |info: &str, name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        let Some(target) = self
            .dial
            .ask(master, &["INFO", "replication"])
            .and_then(|i| field(&i, "master_repl_offset:"))
        else {
            return false;
        };
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            for &p in &self.ports {
                let Some(info) = self.dial.ask(p, &["INFO", "replication"]) else {
                    continue;
                };
                if field(&info, "master_port:") == Some(u64::from(master))
                    && info.contains("master_link_status:up")
                    && field(&info, "slave_repl_offset:").is_some_and(|o| o >= target)
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `master` or `slave`, as the node says of itself.
    pub fn role(&self, port: u16) -> Option<String> {
        let info = self.dial.ask(port, &["INFO", "replication"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("role:"))
            .map(|r| r.trim().to_owned())
    }

    /// The port of the master serving `key`'s slot, as a live node reports it.
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let slot: u16 = self.ports.iter().find_map(|&p| {
            self.dial
                .ask(p, &["CLUSTER", "KEYSLOT", key])?
                .trim()
                .parse()
                .ok()
        })?;
        self.ports.iter().copied().find(|&p| {
            self.role(p).as_deref() == Some("master")
                && self
                    .dial
                    .ask(p, &["CLUSTER", "NODES"])
                    .is_some_and(|nodes| {
                        nodes.lines().any(|l| {
                            l.contains("myself") && l.contains("master") && owns_slot(l, slot)
                        })
                    })
        })
    }

    /// SIGKILL for the node on `port` (no shutdown, no last write).
    pub fn kill9(&mut self, port: u16) {
        if let Some(i) = self.ports.iter().position(|&p| p == port)
            && let Some(mut p) = self.procs[i].take()
        {
            p.kill();
        }
    }

    /// The storage URL of a store under `prefix`: every node (plain), or the first two with
    /// `ca=` (TLS; the Cluster announces the others). It has a query string: more options
    /// follow with `&`.
    pub fn url(&self, prefix: &str) -> String {
        if self.tls {
            return format!(
                "rediss+cluster://127.0.0.1:{},127.0.0.1:{}/?ca={}&prefix={prefix}",
                self.ports[0],
                self.ports[1],
                self.dir.path().join("ca.pem").display()
            );
        }
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}/?prefix={prefix}", nodes.join(","))
    }

    /// The Cluster's folder (one folder per node, and the certificates of a TLS Cluster).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
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
