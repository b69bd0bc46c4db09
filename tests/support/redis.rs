//! Throwaway Redis servers for the Redis tests of both test trees (host/tests and tests/): a
//! standalone server (`Server`: any extra flags such as AOF or a memory limit, restartable on
//! its port and folder, or TLS-only), a master + replica + Sentinel set (`SentinelSet`: plain,
//! with passwords, or TLS-only) and a Cluster of three masters (`Cluster`: with or without a
//! replica each, or TLS-only). TLS servers get a throwaway CA made by `openssl`.
//!
//! Every server runs on free loopback ports (never 6379) in its own temporary folder, never
//! persists unless asked to, and is killed when its handle is dropped, or when the test
//! process ends (a handle kept in a `static`, a panic, a kill: servers get SIGKILL when their
//! parent goes). Tests sharing a server each use a fresh key prefix (`fresh_prefix`); nothing
//! ever runs FLUSHALL. A tiny RESP client (`Redis`, `command`) talks to plain servers.
//!
//! When `redis-server` (or, for TLS, `openssl`) is missing: a failure under `CI=true`, a loud
//! skip otherwise (`require_redis`, `require_tls_tools`). `SPOOL_TEST_REDIS_URL` points the
//! tests of the shared server (`shared_server_url`) at an existing server instead.

mod cluster;
mod dial;
mod process;
mod resp;
mod sentinel;
mod server;
mod tls;

pub use cluster::Cluster;
pub use process::{free_port, fresh_prefix, require_redis, require_tls_tools};
pub use resp::{Redis, Reply, command, command_as};
pub use sentinel::{MASTER_NAME, SentinelSet};
pub use server::{Server, shared_server_url};
pub use tls::{make_ca, make_signed_cert};
