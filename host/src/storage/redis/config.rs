//! Redis storage URLs, parsed into what `conn.rs` connects to:
//!
//! - `redis://[user:pass@]host[:port][/db][?options]`: one server.
//! - `rediss://...`: the same over TLS (rustls). The server's certificate must chain to a
//!   system root (the OS trust store) or, with `ca=/path/ca.pem`, to that CA file instead
//!   (it replaces the system roots, like `redis-cli --cacert`), and must name the URL's host
//!   (an IP host needs an IP SAN). `cert=/path/client.pem&key=/path/client.key` add a client
//!   certificate for servers that require one (`tls-auth-clients yes`). Files are PEM, read
//!   at each (re)connect, so renewed certificates are picked up. There is no option to skip
//!   verification: that would let anyone on the path read and rewrite every job; give the
//!   self-signed server's CA with `ca=` instead.
//! - `redis+sentinel://[user:pass@]host1[:port],host2[:port]/MASTER[/db][?options]`: ask the
//!   Sentinels (default port 26379) for MASTER; `user:pass` is for the data nodes,
//!   `sentinel_username` / `sentinel_password` options for the Sentinels.
//!   `rediss+sentinel://` reaches the Sentinels and the data nodes over TLS, with the same
//!   `ca`/`cert`/`key` options for both (the Sentinels must reach the nodes over TLS and
//!   announce their TLS ports: `tls-replication yes` on the nodes and on the Sentinels).
//! - `redis+cluster://[user:pass@]host1[:port],host2[:port][?options]`: a Cluster (db 0 only);
//!   `rediss+cluster://` reaches every node over TLS, with the same `ca`/`cert`/`key` options
//!   (the nodes must run `tls-cluster yes`, so that they announce their TLS ports).
//!
//! Options: `prefix` (default `spool`; keys are `{prefix}:...`), `timeout` (per command,
//! default 5s), `connect_timeout` (default 5s), `clock`: `redis` (default: job times come
//! from Redis's own `TIME`, plus the Clock's skew, so daemons on hosts whose clocks drift
//! still agree on leases) or `local` (the daemon's Clock, taken as given: what the storage
//! conformance suite uses, since its ManualClock stands still while Redis's clock runs on).
//! Unknown options are errors that name them.

use crate::storage::StorageError;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_PREFIX: &str = "spool";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const KNOWN_OPTIONS: &str =
    "prefix, timeout, connect_timeout, clock, sentinel_username, sentinel_password, ca, cert, key";

/// Whose clock job scripts read (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    Redis,
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Single {
        node: Node,
        db: i64,
        tls: bool,
    },
    Sentinel {
        sentinels: Vec<Node>,
        master: String,
        db: i64,
        tls: bool,
    },
    Cluster {
        nodes: Vec<Node>,
        tls: bool,
    },
}

/// PEM files for `rediss://` (see the module doc); all empty means the system roots, no
/// client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub topology: Topology,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    pub prefix: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub clock: ClockSource,
    pub tls_files: TlsFiles,
}

impl RedisConfig {
    /// Whether the nodes (and Sentinels) are reached over TLS (`rediss://`,
    /// `rediss+sentinel://`, `rediss+cluster://`).
    pub fn tls(&self) -> bool {
        match self.topology {
            Topology::Single { tls, .. }
            | Topology::Sentinel { tls, .. }
            | Topology::Cluster { tls, .. } => tls,
        }
    }

    /// The mode's name for `info` and logs.
    pub fn mode(&self) -> &'static str {
        match self.topology {
            Topology::Single { .. } => "standalone",
            Topology::Sentinel { .. } => "sentinel",
            Topology::Cluster { .. } => "cluster",
        }
    }
}

fn bad(url_shape: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::InvalidInput(format!("invalid redis storage url `{url_shape}`: {why}"))
}

/// Parses a Redis storage URL. Error messages never echo the password.
pub fn parse(url: &str) -> Result<RedisConfig, StorageError> {
    let shown = crate::storage::redact_url(url);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad(&shown, "expected SCHEME://..."))?;
    let scheme = scheme.to_ascii_lowercase();
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (hosts, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = percent_decode(user).map_err(|e| bad(&shown, e))?;
            let pass = pass
                .map(percent_decode)
                .transpose()
                .map_err(|e| bad(&shown, e))?;
            (
                Some(user).filter(|u| !u.is_empty()),
                pass.filter(|p| !p.is_empty()),
            )
        }
    };
    let mut cfg = RedisConfig {
        topology: Topology::Single {
            node: Node {
                host: String::new(),
                port: 0,
            },
            db: 0,
            tls: false,
        },
        username,
        password,
        sentinel_username: None,
        sentinel_password: None,
        prefix: DEFAULT_PREFIX.to_owned(),
        timeout: DEFAULT_TIMEOUT,
        connect_timeout: DEFAULT_TIMEOUT,
        clock: ClockSource::Redis,
        tls_files: TlsFiles::default(),
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).map_err(|e| bad(&shown, e))?;
        let duration = |v: &str| {
            humantime::parse_duration(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    bad(
                        &shown,
                        format!("option `{k}` must be a duration such as 5s (got `{v}`)"),
                    )
                })
        };
        match k {
            "prefix" => cfg.prefix = check_prefix(&v).map_err(|e| bad(&shown, e))?,
            "timeout" => cfg.timeout = duration(&v)?,
            "connect_timeout" => cfg.connect_timeout = duration(&v)?,
            "clock" => {
                cfg.clock = match v.as_str() {
                    "redis" => ClockSource::Redis,
                    "local" => ClockSource::Local,
                    _ => {
                        return Err(bad(
                            &shown,
                            format!("option `clock` must be `redis` or `local` (got `{v}`)"),
                        ));
                    }
                }
            }
            "sentinel_username" => cfg.sentinel_username = Some(v),
            "sentinel_password" => cfg.sentinel_password = Some(v),
            "ca" | "cert" | "key" if v.is_empty() => {
                return Err(bad(&shown, format!("option `{k}` needs a file path")));
            }
            "ca" => cfg.tls_files.ca = Some(PathBuf::from(v)),
            "cert" => cfg.tls_files.cert = Some(PathBuf::from(v)),
            "key" => cfg.tls_files.key = Some(PathBuf::from(v)),
            "insecure" | "tls_insecure" => {
                return Err(bad(
                    &shown,
                    format!(
                        "option `{k}` is not supported: skipping certificate checks would let \
                         anyone on the path read and change jobs; give the server's CA with \
                         ca=/path/ca.pem instead"
                    ),
                ));
            }
            other => {
                return Err(bad(
                    &shown,
                    format!("unknown option `{other}` (known: {KNOWN_OPTIONS})"),
                ));
            }
        }
    }
    let db_from = |s: Option<&&str>| -> Result<i64, StorageError> {
        match s {
            None => Ok(0),
            Some(s) => s.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| {
                bad(
                    &shown,
                    format!("database must be a number such as 0 (got `{s}`)"),
                )
            }),
        }
    };
    cfg.topology = match scheme.as_str() {
        "redis" | "rediss" => {
            if path.len() > 1 {
                return Err(bad(&shown, "expected redis://HOST[:PORT][/DB]"));
            }
            let nodes = parse_nodes(hosts, 6379).map_err(|e| bad(&shown, e))?;
            let [node] = <[Node; 1]>::try_from(nodes).map_err(|_| {
                bad(
                    &shown,
                    "one host expected; use redis+cluster:// or redis+sentinel:// for several",
                )
            })?;
            Topology::Single {
                node,
                db: db_from(path.first())?,
                tls: scheme == "rediss",
            }
        }
        "redis+sentinel" | "rediss+sentinel" => {
            let sentinels = parse_nodes(hosts, 26379).map_err(|e| bad(&shown, e))?;
            let master = path.first().ok_or_else(|| {
                bad(
                    &shown,
                    "the master's name is missing: redis+sentinel://HOST:26379/MASTER[/DB]",
                )
            })?;
            if path.len() > 2 {
                return Err(bad(&shown, "expected redis+sentinel://HOSTS/MASTER[/DB]"));
            }
            Topology::Sentinel {
                sentinels,
                master: percent_decode(master).map_err(|e| bad(&shown, e))?,
                db: db_from(path.get(1))?,
                tls: scheme == "rediss+sentinel",
            }
        }
        "redis+cluster" | "rediss+cluster" => {
            if !path.is_empty() {
                return Err(bad(
                    &shown,
                    "a Redis Cluster has only database 0: drop the /DB part",
                ));
            }
            Topology::Cluster {
                nodes: parse_nodes(hosts, 6379).map_err(|e| bad(&shown, e))?,
                tls: scheme == "rediss+cluster",
            }
        }
        other => return Err(bad(&shown, format!("unknown scheme `{other}`"))),
    };
    let files = &cfg.tls_files;
    if !cfg.tls() && *files != TlsFiles::default() {
        return Err(bad(
            &shown,
            "options `ca`, `cert` and `key` are for TLS: use a rediss://, rediss+sentinel:// or \
             rediss+cluster:// url",
        ));
    }
    if files.cert.is_some() != files.key.is_some() {
        return Err(bad(
            &shown,
            "a client certificate needs both `cert` and `key` (PEM files)",
        ));
    }
    Ok(cfg)
}

/// Prefixes become `{prefix}` hash tags: braces would break the tag, and spaces or control
/// characters make keys unreadable in redis-cli.
fn check_prefix(p: &str) -> Result<String, String> {
    let ok = !p.is_empty()
        && p.len() <= 64
        && p.chars()
            .all(|c| c.is_ascii_graphic() && c != '{' && c != '}');
    if ok {
        Ok(p.to_owned())
    } else {
        Err(format!(
            "prefix must be 1-64 printable ASCII characters without braces (got `{}`)",
            p.escape_debug()
        ))
    }
}

fn parse_nodes(hosts: &str, default_port: u16) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let (host, port) = if let Some(rest) = h.strip_prefix('[') {
            // [IPv6]:port
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("bad host `{h}`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match h.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (h, None),
            }
        };
        if host.is_empty() {
            return Err(format!("empty host in `{h}`"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| format!("bad port in `{h}`"))?,
            None => default_port,
        };
        nodes.push(Node {
            host: host.to_owned(),
            port,
        });
    }
    if nodes.is_empty() {
        return Err("no host given".into());
    }
    Ok(nodes)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes do not form UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_gets_the_defaults() {
        let c = parse("redis://127.0.0.1").unwrap();
        assert_eq!(
            c.topology,
            Topology::Single {
                node: Node {
                    host: "127.0.0.1".into(),
                    port: 6379
                },
                db: 0,
                tls: false
            }
        );
        assert_eq!(c.prefix, "spool");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.clock, ClockSource::Redis);
        assert_eq!(
            parse("redis://h?clock=local").unwrap().clock,
            ClockSource::Local
        );
        assert!(parse("redis://h?clock=sundial").is_err());
    }

    #[test]
    fn credentials_db_and_options_are_read() {
        let c = parse("redis://bob:p%40ss@h:7000/3?prefix=jobs&timeout=2s").unwrap();
        assert_eq!(c.username.as_deref(), Some("bob"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(
            c.topology,
            Topology::Single {
                node: Node {
                    host: "h".into(),
                    port: 7000
                },
                db: 3,
                tls: false
            }
        );
        assert_eq!(c.prefix, "jobs");
        assert_eq!(c.timeout, Duration::from_secs(2));
    }

    #[test]
    fn a_password_only_url_has_no_username() {
        let c = parse("redis://:secret@h").unwrap();
        assert_eq!(c.username, None);
        assert_eq!(c.password.as_deref(), Some("secret"));
    }

    #[test]
    fn sentinel_urls_name_the_master_and_db() {
        let c = parse("redis+sentinel://a:26380,b/mymaster/2?sentinel_password=x").unwrap();
        assert_eq!(
            c.topology,
            Topology::Sentinel {
                sentinels: vec![
                    Node {
                        host: "a".into(),
                        port: 26380
                    },
                    Node {
                        host: "b".into(),
                        port: 26379
                    }
                ],
                master: "mymaster".into(),
                db: 2,
                tls: false,
            }
        );
        assert_eq!(c.sentinel_password.as_deref(), Some("x"));
        assert!(parse("redis+sentinel://a:26379").is_err());
    }

    #[test]
    fn cluster_urls_list_nodes_and_refuse_a_db() {
        let c = parse("redis+cluster://[::1]:7000,h:7001").unwrap();
        assert_eq!(
            c.topology,
            Topology::Cluster {
                nodes: vec![
                    Node {
                        host: "::1".into(),
                        port: 7000
                    },
                    Node {
                        host: "h".into(),
                        port: 7001
                    }
                ],
                tls: false
            }
        );
        assert!(parse("redis+cluster://h:7000/1").is_err());
        let c = parse("rediss+cluster://a:7000,b:7001?ca=/ca.pem").unwrap();
        assert!(c.tls());
        assert_eq!(c.tls_files.ca, Some(PathBuf::from("/ca.pem")));
        let e = parse("redis+cluster://a:7000?ca=/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rediss+cluster://"), "{e}");
        let e = parse("redis+sentinel://a/m?ca=/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rediss+sentinel://"), "{e}");
        let c = parse("rediss+sentinel://a,b:26380/m/1?ca=/ca.pem").unwrap();
        assert!(c.tls());
        assert_eq!(c.mode(), "sentinel");
    }

    #[test]
    fn unknown_options_and_bad_prefixes_are_named() {
        let e = parse("redis://h?colour=red").unwrap_err().to_string();
        assert!(e.contains("unknown option `colour`"), "{e}");
        let e = parse("redis://h?prefix=a{b}").unwrap_err().to_string();
        assert!(e.contains("prefix"), "{e}");
    }

    #[test]
    fn rediss_urls_take_tls_files_and_refuse_insecure() {
        let c = parse("rediss://h:6380/1?ca=/etc/ca.pem&cert=/c.pem&key=/c.key").unwrap();
        assert_eq!(
            c.topology,
            Topology::Single {
                node: Node {
                    host: "h".into(),
                    port: 6380
                },
                db: 1,
                tls: true
            }
        );
        assert_eq!(c.tls_files.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.tls_files.cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.tls_files.key, Some(PathBuf::from("/c.key")));
        assert_eq!(parse("rediss://h").unwrap().tls_files, TlsFiles::default());
        let e = parse("redis://h?ca=/ca.pem").unwrap_err().to_string();
        assert!(e.contains("rediss://"), "{e}");
        let e = parse("rediss://h?cert=/c.pem").unwrap_err().to_string();
        assert!(e.contains("both `cert` and `key`"), "{e}");
        let e = parse("rediss://h?insecure=true").unwrap_err().to_string();
        assert!(e.contains("not supported") && e.contains("ca="), "{e}");
        let e = parse("rediss://h?ca=").unwrap_err().to_string();
        assert!(e.contains("needs a file path"), "{e}");
    }

    #[test]
    fn errors_and_redaction_hide_the_password() {
        let e = parse("redis://u:hunter2@h/x").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(
            crate::storage::redact_url("redis://u:hunter2@h:1/0?sentinel_password=z"),
            "redis://u:***@h:1/0?sentinel_password=***"
        );
    }
}
