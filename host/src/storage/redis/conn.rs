//! The connection to Redis for each topology, behind one cheap-to-clone handle that
//! implements redis-rs's async `ConnectionLike` (so `Script::invoke_async` runs on any of
//! them). Every flavour multiplexes all commands over one connection per node and
//! reconnects by itself:
//! - standalone: redis-rs's `ConnectionManager` (reconnects in the background);
//! - Cluster: redis-rs's cluster connection (follows MOVED/ASK, refreshes slots);
//! - Sentinel: ours, below: it asks the Sentinels for the master on first use and again
//!   after any error that means "this is not (or no longer) the master".
//!
//! Every command has a response timeout and every connection attempt a connect timeout
//! (`RedisConfig::timeout`, `connect_timeout`), so a dead server fails calls instead of
//! hanging the daemon.

use super::config::{Node, RedisConfig, Topology};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, ProtocolVersion,
    RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value,
};
use redis::{ClientTlsConfig, TlsCertificates, TlsMode};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

impl Conn {
    /// Connects (the first connection is made now, so a wrong address fails `open`).
    pub async fn connect(cfg: &RedisConfig) -> RedisResult<Conn> {
        match &cfg.topology {
            Topology::Single { node, db, .. } => {
                let client = node_client(cfg, node, *db)?;
                // One plain attempt first: the manager retries with backoff (seconds), and a
                // daemon whose Redis is down at startup should say so at once.
                let probe = AsyncConnectionConfig::new()
                    .set_connection_timeout(cfg.connect_timeout)
                    .set_response_timeout(cfg.timeout);
                drop(
                    client
                        .get_multiplexed_async_connection_with_config(&probe)
                        .await?,
                );
                let manager_cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(cfg.connect_timeout)
                    .set_response_timeout(cfg.timeout)
                    // A few retries per outage; after them every failing command
                    // triggers a new reconnect in the background anyway.
                    .set_number_of_retries(3)
                    .set_max_delay(1_000);
                Ok(Conn::Single(
                    ConnectionManager::new_with_config(client, manager_cfg).await?,
                ))
            }
            Topology::Cluster { nodes, .. } => {
                let infos: Vec<ConnectionInfo> =
                    nodes.iter().map(|n| node_info(cfg, n, 0)).collect();
                let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
                    .connection_timeout(cfg.connect_timeout)
                    .response_timeout(cfg.timeout);
                if cfg.tls() {
                    // The nodes the Cluster announces are reached the same way.
                    builder = builder.tls(redis::cluster::TlsMode::Secure);
                    if let Some(certs) = tls_certificates(cfg)? {
                        builder = builder.certs(certs);
                    }
                }
                if let Some(u) = &cfg.username {
                    builder = builder.username(u.clone());
                }
                if let Some(p) = &cfg.password {
                    builder = builder.password(p.clone());
                }
                let client = builder.build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
            Topology::Sentinel { .. } => {
                let conn = SentinelConn {
                    client: tokio::sync::Mutex::new(sentinel_client(cfg)?),
                    current: Mutex::new(None),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(cfg.connect_timeout)
                        .set_response_timeout(cfg.timeout),
                };
                conn.connection().await?;
                Ok(Conn::Sentinel(Arc::new(conn)))
            }
        }
    }

    /// `INFO` from the server that holds our keys: in a Cluster, the master of our slot
    /// (a plain INFO would go to a random node).
    pub async fn info(&self, slot: u16) -> RedisResult<String> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("server")
            .arg("clients")
            .arg("memory")
            .arg("replication");
        match self {
            Conn::Cluster(c) => {
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                let v = c
                    .clone()
                    .route_command(&cmd, RoutingInfo::SingleNode(route))
                    .await?;
                redis::from_redis_value(&v)
            }
            other => cmd.query_async(&mut other.clone()).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => Box::pin(async move {
                let mut c = s.connection().await?;
                let r = c.req_packed_command(cmd).await;
                s.check(&r);
                r
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(s) => Box::pin(async move {
                let mut c = s.connection().await?;
                let r = c.req_packed_commands(cmd, offset, count).await;
                s.check(&r);
                r
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
            Conn::Sentinel(s) => s
                .current
                .lock()
                .ok()
                .and_then(|c| c.as_ref().map(|c| c.get_db()))
                .unwrap_or(0),
        }
    }
}

/// The Sentinel flavour: one multiplexed connection to whichever node the Sentinels call
/// master, dropped (and looked up again on the next call) after an error that says it is
/// gone or no longer the master.
pub struct SentinelConn {
    /// Asks the Sentinels; locked only while (re)connecting.
    client: tokio::sync::Mutex<SentinelClient>,
    /// Written by `connection` (connect) and `check` (forget); read by every call.
    current: Mutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
}

impl SentinelConn {
    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let mut client = self.client.lock().await;
        // Another call may have connected while this one waited for the lock.
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let c = client
            .get_async_connection_with_config(&self.config)
            .await?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some(c.clone());
        }
        Ok(c)
    }

    fn check<T>(&self, r: &RedisResult<T>) {
        if let Err(e) = r
            && means_master_lost(e)
            && let Ok(mut current) = self.current.lock()
        {
            *current = None;
        }
    }
}

/// Errors after which a connection must not be used again: I/O trouble, or a node that is
/// now a replica (READONLY) or lost its master (MASTERDOWN) after a failover.
pub fn means_master_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::ReadOnly | ErrorKind::MasterDown | ErrorKind::BusyLoadingError
        )
}

/// The client for one data node (a standalone server, or a Cluster node for the wake-up
/// subscription): plain TCP, or TLS when the url asks for it (rustls; the server is checked
/// against the system roots, or the `ca` file instead; `cert`/`key` add a client
/// certificate). The PEM files are read now, so each reconnect sees renewed ones.
pub fn node_client(cfg: &RedisConfig, node: &Node, db: i64) -> RedisResult<redis::Client> {
    let info = node_info(cfg, node, db);
    match tls_certificates(cfg)? {
        None => redis::Client::open(info),
        Some(certs) => redis::Client::build_with_tls(info, certs).map_err(|e| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "cannot use the TLS files in the url",
                format!("{e}; check that `ca`, `cert` and `key` are PEM files"),
            ))
        }),
    }
}

/// How to reach `node`: over TLS when the url says so, else plain TCP.
fn node_info(cfg: &RedisConfig, node: &Node, db: i64) -> ConnectionInfo {
    let mut info = connection_info(cfg, node, db);
    if cfg.tls() {
        info.addr = ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: false,
            tls_params: None,
        };
    }
    info
}

/// The PEM files of a TLS url, read now; None when it gives none (the system roots, no
/// client certificate) or is not TLS.
fn tls_certificates(cfg: &RedisConfig) -> RedisResult<Option<TlsCertificates>> {
    let files = &cfg.tls_files;
    if !cfg.tls() || (files.ca.is_none() && files.cert.is_none()) {
        return Ok(None);
    }
    let client_tls = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_pem(cert, "client certificate (cert=)")?,
            client_key: read_pem(key, "client key (key=)")?,
        }),
        _ => None,
    };
    let root_cert = files
        .ca
        .as_deref()
        .map(|ca| read_pem(ca, "CA certificate (ca=)"))
        .transpose()?;
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// A PEM file's bytes. A file without a PEM block is refused here: the TLS library would
/// take it as "no certificates" and every handshake would then fail, which reads as Redis
/// being unreachable (and a fallback spool would wait for it for ever).
fn read_pem(path: &Path, what: &str) -> RedisResult<Vec<u8>> {
    let bad = |why: String| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read a TLS file",
            format!("the {what} `{}`: {why}", path.display()),
        ))
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(bad(
            "it is not a PEM file (no `-----BEGIN ...-----` block); give the PEM form (from \
             DER: `openssl x509 -inform der -in FILE -out FILE.pem` for a certificate, \
             `openssl pkey -inform der -in FILE -out FILE.pem` for a key)"
                .into(),
        ));
    }
    Ok(bytes)
}

pub fn connection_info(cfg: &RedisConfig, node: &Node, db: i64) -> ConnectionInfo {
    ConnectionInfo {
        addr: ConnectionAddr::Tcp(node.host.clone(), node.port),
        redis: RedisConnectionInfo {
            db,
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            protocol: ProtocolVersion::RESP2,
        },
    }
}

/// A Sentinel client for the master of `cfg`'s topology (which must be Sentinel). With
/// `rediss+sentinel://` both the Sentinels and the master are reached over TLS, checked
/// against the same `ca` (or the system roots) and shown the same client certificate.
pub fn sentinel_client(cfg: &RedisConfig) -> RedisResult<SentinelClient> {
    let Topology::Sentinel {
        sentinels,
        master,
        db,
        tls,
    } = &cfg.topology
    else {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "not a sentinel url",
        )));
    };
    let addrs = sentinels.iter().map(|n| {
        if *tls {
            ConnectionAddr::TcpTls {
                host: n.host.clone(),
                port: n.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(n.host.clone(), n.port)
        }
    });
    let mut b = SentinelClientBuilder::new(addrs, master.clone(), SentinelServerType::Master)?
        .set_client_to_redis_db(*db);
    if *tls {
        b = b
            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
            .set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(certs) = tls_certificates(cfg)? {
            b = b
                .set_client_to_sentinel_certificates(certs.clone())
                .set_client_to_redis_certificates(certs);
        }
    }
    if let Some(u) = &cfg.username {
        b = b.set_client_to_redis_username(u.clone());
    }
    if let Some(p) = &cfg.password {
        b = b.set_client_to_redis_password(p.clone());
    }
    if let Some(u) = &cfg.sentinel_username {
        b = b.set_client_to_sentinel_username(u.clone());
    }
    if let Some(p) = &cfg.sentinel_password {
        b = b.set_client_to_sentinel_password(p.clone());
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_file_that_is_not_pem_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.der");
        std::fs::write(&not_pem, [0x30u8, 0x82, 0x01, 0x0a]).unwrap();
        let e = read_pem(&not_pem, "CA certificate (ca=)").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidClientConfig);
        let msg = e.to_string();
        assert!(
            msg.contains("ca.der") && msg.contains("not a PEM file") && msg.contains("openssl"),
            "{msg}"
        );
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_pem(&pem, "CA certificate (ca=)").is_ok());
        let e = read_pem(&dir.path().join("missing.pem"), "client key (key=)").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidClientConfig);
    }
}
