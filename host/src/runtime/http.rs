//! Outbound HTTP for plugins, through the standard `wasi:http/outgoing-handler` that
//! wasmtime-wasi-http implements; this module decides what may be sent and sends it.
//!
//! - Every request is checked against the plugin's `allowed_hosts` (allow.rs) before anything
//!   else happens; a refused one gets the WASI `HTTP-request-denied` error code and the job's log
//!   says which URL was refused and which manifest key would grant it.
//! - The connector (send.rs) resolves the name itself and refuses internal addresses
//!   (address.rs) unless the allow-list names the address literally, then connects to exactly
//!   the address it checked. Redirects are never followed by the host: a guest that follows
//!   one makes a new request, which is checked like any other.
//! - Limits per job (`HttpLimits`: request count, response bytes, connect / first byte / idle
//!   timeouts) and per plugin version across the daemon (concurrent requests). Hitting one
//!   fails that request, never the job or the daemon; the job's log names the limit.
//! - Outcomes are reported to an `HttpObserver` (the daemon's metrics).

mod address;
mod allow;
mod send;

pub use allow::{AllowList, AllowRule, Destination, Scheme};

use super::host_api::{JobLog, LogLevel};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Limits on one plugin's outbound requests. The daemon's `[http]` config gives the defaults,
/// a manifest's `[http]` table overrides them for its plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Requests one attempt of a job may start.
    pub max_requests: u32,
    /// Bytes of one response body.
    pub max_response_bytes: u64,
    /// Resolving the name, connecting and the TLS handshake.
    pub connect_timeout: Duration,
    /// From sending the request to the response's status line and headers.
    pub first_byte_timeout: Duration,
    /// Longest pause between two pieces of a response body.
    pub idle_timeout: Duration,
    /// Requests in flight at once for one plugin, across every job of this daemon.
    pub max_concurrent: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_requests: 100,
            max_response_bytes: 10 << 20,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_concurrent: 16,
        }
    }
}

/// A manifest's `[http]` table: the limits it sets; the rest come from the daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpLimitsOverride {
    pub max_requests: Option<u32>,
    pub max_response_bytes: Option<u64>,
    pub connect_timeout: Option<Duration>,
    pub first_byte_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_concurrent: Option<u32>,
}

impl HttpLimitsOverride {
    pub fn over(&self, base: HttpLimits) -> HttpLimits {
        HttpLimits {
            max_requests: self.max_requests.unwrap_or(base.max_requests),
            max_response_bytes: self.max_response_bytes.unwrap_or(base.max_response_bytes),
            connect_timeout: self.connect_timeout.unwrap_or(base.connect_timeout),
            first_byte_timeout: self.first_byte_timeout.unwrap_or(base.first_byte_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(base.idle_timeout),
            max_concurrent: self.max_concurrent.unwrap_or(base.max_concurrent),
        }
    }
}

/// The daemon-wide HTTP settings.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    pub limits: HttpLimits,
    /// PEM file of the CAs that HTTPS servers must chain to; None: the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// Where outbound requests are reported (the daemon's metrics). Called from request tasks, so
/// it must be cheap and never block.
pub trait HttpObserver: Send + Sync {
    /// A response arrived (`status`), or the request failed after it was let through
    /// (`status` is the error kind, such as `connect_timeout`).
    fn request(&self, plugin: &str, host: &str, status: &str, duration: Duration);
    /// A request refused before any connection: `reason` is `not_allowed`,
    /// `private_address`, `max_requests` or `max_concurrent`.
    fn denied(&self, plugin: &str, reason: &str);
}

/// The CA roots HTTPS servers are checked against, loaded once, on the first HTTPS request
/// (most daemons never make one, and reading the system store takes milliseconds).
pub(crate) struct TlsRoots {
    ca_file: Option<PathBuf>,
    config: OnceLock<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>>,
}

impl TlsRoots {
    /// Checks a configured CA file now, so that a bad one stops the daemon at start.
    pub(crate) fn new(ca_file: Option<PathBuf>) -> Result<TlsRoots, String> {
        if let Some(path) = &ca_file {
            read_ca_file(path)?;
        }
        Ok(TlsRoots {
            ca_file,
            config: OnceLock::new(),
        })
    }

    pub(crate) fn client_config(&self) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
        self.config
            .get_or_init(|| {
                let mut roots = tokio_rustls::rustls::RootCertStore::empty();
                match &self.ca_file {
                    Some(path) => {
                        for cert in read_ca_file(path)? {
                            roots
                                .add(cert)
                                .map_err(|e| format!("`http.ca_file` {}: {e}", path.display()))?;
                        }
                    }
                    None => {
                        let found = rustls_native_certs::load_native_certs();
                        for cert in found.certs {
                            // A broken certificate in the system store is skipped, as
                            // every TLS client does.
                            let _ = roots.add(cert);
                        }
                    }
                }
                if roots.is_empty() {
                    return Err(
                        "no CA certificates were found in the system's store; install \
                                the `ca-certificates` package or set `http.ca_file`"
                            .to_string(),
                    );
                }
                let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
                let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("cannot set up TLS: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(Arc::new(config))
            })
            .clone()
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "`http.ca_file` {}: cannot read PEM certificates ({e}); give a PEM file of CA \
                 certificates",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "`http.ca_file` {} holds no PEM certificate; give a PEM file of CA certificates \
             (convert DER with `openssl x509 -inform der -in ca.der -out ca.pem`)",
            path.display()
        ));
    }
    Ok(certs)
}

/// What one plugin version may do over HTTP; shared by all its jobs.
pub(crate) struct HttpPolicy {
    pub(crate) plugin: String,
    pub(crate) allow: AllowList,
    pub(crate) limits: HttpLimits,
    /// `limits.max_concurrent` permits: one per request in flight, held until its response
    /// body has been read to the end or dropped.
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) tls: Arc<TlsRoots>,
    pub(crate) observer: Option<Arc<dyn HttpObserver>>,
}

impl HttpPolicy {
    pub(crate) fn new(
        plugin: &str,
        allow: AllowList,
        limits: HttpLimits,
        tls: Arc<TlsRoots>,
        observer: Option<Arc<dyn HttpObserver>>,
    ) -> HttpPolicy {
        HttpPolicy {
            plugin: plugin.to_string(),
            allow,
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent.max(1) as usize)),
            limits,
            tls,
            observer,
        }
    }

    /// A policy that allows nothing, for tests of other parts of the runtime.
    #[cfg(test)]
    pub(crate) fn denying(plugin: &str) -> Arc<HttpPolicy> {
        let tls = Arc::new(TlsRoots {
            ca_file: None,
            config: OnceLock::new(),
        });
        Arc::new(HttpPolicy::new(
            plugin,
            AllowList::default(),
            HttpLimits::default(),
            tls,
            None,
        ))
    }

    fn denied(&self, reason: &str) {
        if let Some(o) = &self.observer {
            o.denied(&self.plugin, reason);
        }
    }

    fn finished(&self, host: &str, status: &str, took: Duration) {
        if let Some(o) = &self.observer {
            o.request(&self.plugin, host, status, took);
        }
    }
}

/// One job's side of outbound HTTP: the `WasiHttpHooks` wasmtime-wasi-http calls for every
/// request the guest sends.
pub(crate) struct JobHttp {
    policy: Arc<HttpPolicy>,
    log: Arc<Mutex<JobLog>>,
    sent: u32,
}

impl JobHttp {
    pub(crate) fn new(policy: Arc<HttpPolicy>, log: Arc<Mutex<JobLog>>) -> JobHttp {
        JobHttp {
            policy,
            log,
            sent: 0,
        }
    }

    /// Decide, before any connection, whether this request may go out.
    fn admit(&mut self, uri: &http::Uri) -> Result<Admitted, HttpError> {
        let policy = &self.policy;
        let Some(to) = allow::destination(uri) else {
            note(
                &self.log,
                LogLevel::Warn,
                &format!("refused {uri}: not an http or https URL with a host"),
            );
            policy.denied("not_allowed");
            return Err(HttpError::HttpRequestUriInvalid);
        };
        let Some(rule) = policy.allow.find(&to) else {
            let grant = format!("{to}");
            let why = if policy.allow.is_empty() {
                format!(
                    "this plugin may not make HTTP requests; add \"{grant}\" to `allowed_hosts` \
                     in its manifest to allow this one"
                )
            } else {
                format!(
                    "{to} is not in `allowed_hosts` of this plugin's manifest; add \"{grant}\" \
                     there to allow it"
                )
            };
            note(&self.log, LogLevel::Warn, &format!("refused {uri}: {why}"));
            policy.denied("not_allowed");
            return Err(HttpError::HttpRequestDenied);
        };
        if self.sent >= policy.limits.max_requests {
            note(
                &self.log,
                LogLevel::Warn,
                &format!(
                    "refused {uri}: this job already made {} requests, the limit \
                     `http.max_requests` of this plugin",
                    policy.limits.max_requests
                ),
            );
            policy.denied("max_requests");
            return Err(HttpError::HttpRequestDenied);
        }
        self.sent += 1;
        Ok(Admitted {
            url: uri.to_string(),
            literal: rule.is_literal_address(),
            to,
        })
    }
}

/// A request the allow-list let through, on its way to the connector.
pub(crate) struct Admitted {
    url: String,
    to: Destination,
    /// The allow-list entry writes the address itself: internal addresses are allowed.
    literal: bool,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for JobHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        match self.admit(request.uri()) {
            Err(e) => Box::new(async move { Err(e) }),
            Ok(admitted) => {
                let policy = self.policy.clone();
                let log = self.log.clone();
                Box::new(send::send(policy, log, admitted, request, options))
            }
        }
    }
}

/// A line in the job's log, tagged `http`.
fn note(log: &Mutex<JobLog>, level: LogLevel, text: &str) {
    JobLog::lock(log).host_note(level, "http", text);
}

/// The limits of one request: the plugin's, lowered (never raised) by the guest's own
/// request options.
fn effective(limits: HttpLimits, options: Option<RequestOptions>) -> HttpLimits {
    let lower = |mine: Duration, asked: Option<Duration>| match asked {
        Some(d) if !d.is_zero() => mine.min(d),
        _ => mine,
    };
    let o = options.unwrap_or_default();
    HttpLimits {
        connect_timeout: lower(limits.connect_timeout, o.connect_timeout),
        first_byte_timeout: lower(limits.first_byte_timeout, o.first_byte_timeout),
        idle_timeout: lower(limits.idle_timeout, o.between_bytes_timeout),
        ..limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_options_only_lower_the_limits() {
        let limits = HttpLimits::default();
        let asked = RequestOptions {
            connect_timeout: Some(Duration::from_secs(60)),
            first_byte_timeout: Some(Duration::from_millis(100)),
            between_bytes_timeout: Some(Duration::ZERO),
        };
        let e = effective(limits, Some(asked));
        assert_eq!(e.connect_timeout, limits.connect_timeout);
        assert_eq!(e.first_byte_timeout, Duration::from_millis(100));
        assert_eq!(e.idle_timeout, limits.idle_timeout);
    }

    #[test]
    fn a_manifest_override_replaces_only_what_it_sets() {
        let o = HttpLimitsOverride {
            max_requests: Some(3),
            ..Default::default()
        };
        let l = o.over(HttpLimits::default());
        assert_eq!(l.max_requests, 3);
        assert_eq!(l.max_concurrent, HttpLimits::default().max_concurrent);
    }
}
