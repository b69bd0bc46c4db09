//! What a job's `Store` holds (`JobState`) and the host side of the plugin imports: log,
//! progress, cache, enqueue, config and (0.2.0) secrets, for both contract versions from one
//! implementation; the capture of the guest's stdout/stderr into the job's log lines (bounded,
//! so a chatty guest cannot grow host memory); and the redaction of the plugin's secrets from
//! everything it writes.

use super::JobServices;
use super::bindings::{v1, v2};
use super::http::JobHttp;
use super::limits::{Deadline, MemoryLimiter, StopReason};
use super::secrets::Secrets;
use crate::job::{self, NewJob};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Longest kept log line, in bytes; longer ones are cut.
const MAX_LINE_BYTES: usize = 4096;
/// How many stderr lines are kept for the error message of a crash.
const STDERR_TAIL_LINES: usize = 12;
/// How much of one job's output is copied into the daemon's own log: the first lines up to
/// this count and size. The job keeps its last lines either way; without a cap one chatty job
/// grew the daemon's log by more than a gigabyte.
const TRACE_MAX_LINES: usize = 200;
const TRACE_MAX_BYTES: usize = 64 << 10;
/// Follow-up jobs one attempt may enqueue.
pub(crate) const MAX_FOLLOWUPS: usize = 1000;
/// Payload bytes all follow-ups of one attempt may hold together. Follow-ups live in host
/// memory until the attempt ends, outside the guest's memory limit: without this cap, 1000
/// follow-ups of 1 MiB each would take 1 GiB of the daemon per job.
pub(crate) const MAX_FOLLOWUP_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The data of one job's `Store`.
pub(crate) struct JobState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) deadline: Deadline,
    /// Set by the epoch callback just before it interrupts the guest.
    pub(crate) stop: Option<StopReason>,
    pub(crate) services: Arc<dyn JobServices>,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) log: Arc<Mutex<JobLog>>,
    pub(crate) followups: Vec<NewJob>,
    /// Sum of the payload sizes in `followups` (bounded by `MAX_FOLLOWUP_BYTES`).
    pub(crate) followup_bytes: usize,
    /// Largest follow-up payload (the daemon's `max_payload`).
    pub(crate) max_payload: usize,
    /// Time for follow-up jobs' run-at times.
    pub(crate) clock: Arc<dyn crate::job::Clock>,
    pub(crate) secrets: Arc<Secrets>,
    pub(crate) http_ctx: WasiHttpCtx,
    /// Decides and sends the guest's outbound requests (`wasi:http`).
    pub(crate) http: JobHttp,
}

impl JobState {
    /// Readies a kept instance's state for its next job: that job's services, deadline and
    /// HTTP budget, and nothing of the previous job's follow-ups, stop or memory verdict.
    pub(crate) fn begin_job(
        &mut self,
        services: Arc<dyn JobServices>,
        deadline: Deadline,
        http: JobHttp,
    ) {
        self.services = services;
        self.deadline = deadline;
        self.http = http;
        self.stop = None;
        self.followups.clear();
        self.followup_bytes = 0;
        self.limiter.begin_job();
    }

    /// Whether the guest still holds an outbound HTTP request, response or body: kept past
    /// its job, it would hold its connection and `http.max_concurrent` place and write into a
    /// later job's log.
    pub(crate) fn holds_http(&mut self) -> bool {
        use wasmtime_wasi_http::p2::body::{
            HostFutureTrailers, HostIncomingBody, HostOutgoingBody,
        };
        use wasmtime_wasi_http::p2::types::{
            HostFutureIncomingResponse, HostIncomingResponse, HostOutgoingRequest,
        };
        self.table.iter_mut().any(|entry| {
            let entry: &dyn std::any::Any = entry;
            entry.is::<HostFutureIncomingResponse>()
                || entry.is::<HostIncomingResponse>()
                || entry.is::<HostIncomingBody>()
                || entry.is::<HostOutgoingRequest>()
                || entry.is::<HostOutgoingBody>()
                || entry.is::<HostFutureTrailers>()
        })
    }

    /// An instance going idle lets go of its job's services (and what they hold).
    pub(crate) fn end_job(&mut self) {
        self.services = Arc::new(super::NoServices);
        self.followups = Vec::new();
    }
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for JobState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

/// Names for `tracing` events of one job, when the runtime sends guest lines there.
pub(crate) struct TraceNames {
    pub(crate) plugin: String,
    pub(crate) job_id: String,
}

/// What one job has copied into the daemon's log so far, against `TRACE_MAX_LINES` and
/// `TRACE_MAX_BYTES`.
#[derive(Default)]
struct TraceBudget {
    lines: usize,
    bytes: usize,
    /// Lines left out once the budget ran out.
    skipped: usize,
}

/// The job's log lines, shared by the `log` import and the stdout/stderr pipes.
pub(crate) struct JobLog {
    lines: VecDeque<String>,
    stderr_tail: VecDeque<String>,
    partial: [Vec<u8>; 2],
    services: Arc<dyn JobServices>,
    trace: Option<TraceNames>,
    traced: TraceBudget,
    /// Values removed from every line before it is kept or passed on.
    secrets: Arc<Secrets>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl JobLog {
    pub(crate) fn new(
        services: Arc<dyn JobServices>,
        trace: Option<TraceNames>,
        secrets: Arc<Secrets>,
    ) -> Self {
        Self {
            lines: VecDeque::new(),
            stderr_tail: VecDeque::new(),
            partial: [Vec::new(), Vec::new()],
            services,
            trace,
            traced: TraceBudget::default(),
            secrets,
        }
    }

    /// Starts the log of another job on a kept instance: nothing of the previous job's lines
    /// stays.
    pub(crate) fn begin(&mut self, services: Arc<dyn JobServices>, trace: Option<TraceNames>) {
        self.lines.clear();
        self.stderr_tail.clear();
        self.partial = [Vec::new(), Vec::new()];
        self.services = services;
        self.trace = trace;
        self.traced = TraceBudget::default();
    }

    pub(crate) fn lock(log: &Mutex<JobLog>) -> MutexGuard<'_, JobLog> {
        log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&mut self, level: LogLevel, tag: &str, text: &str) {
        let text = self.secrets.redact(truncate(text, MAX_LINE_BYTES));
        let line = format!("[{tag}] {text}");
        self.services.log(level, &line);
        self.trace(level, &line);
        if self.lines.len() == job::MAX_LOG_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// Copies a line into the daemon's log while the job's budget lasts; the first line over
    /// it says that the rest stays in the job only.
    fn trace(&mut self, level: LogLevel, line: &str) {
        let Some(t) = &self.trace else { return };
        let b = &mut self.traced;
        if b.skipped == 0
            && b.lines < TRACE_MAX_LINES
            && b.bytes.saturating_add(line.len()) <= TRACE_MAX_BYTES
        {
            b.lines += 1;
            b.bytes += line.len();
            trace_line(t, level, line);
            return;
        }
        if b.skipped == 0 {
            tracing::warn!(
                target: "spool::plugin",
                plugin = t.plugin.as_str(),
                job_id = t.job_id.as_str(),
                "this job wrote more than {TRACE_MAX_LINES} lines or {} KiB of log: the rest \
                 is not copied here (the job keeps its last {} lines: `spool job ID`)",
                TRACE_MAX_BYTES >> 10,
                job::MAX_LOG_LINES
            );
        }
        b.skipped += 1;
    }

    pub(crate) fn guest_log(&mut self, level: LogLevel, message: &str) {
        self.push(level, level.as_str(), message);
    }

    /// A line the host adds about the job (such as a refused HTTP request), tagged `tag`.
    pub(crate) fn host_note(&mut self, level: LogLevel, tag: &str, message: &str) {
        self.push(level, tag, message);
    }

    /// Bytes from the guest's stdout or stderr: complete lines are logged, the rest waits.
    pub(crate) fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[stream as usize]);
            line.extend_from_slice(&rest[..nl]);
            self.output_line(stream, &line);
            rest = &rest[nl + 1..];
        }
        let partial = &mut self.partial[stream as usize];
        let room = MAX_LINE_BYTES.saturating_sub(partial.len());
        partial.extend_from_slice(&rest[..rest.len().min(room)]);
        if partial.len() >= MAX_LINE_BYTES {
            let line = std::mem::take(partial);
            self.output_line(stream, &line);
        }
    }

    fn output_line(&mut self, stream: Stream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches('\r');
        // Blank lines (Rust's panic message starts with one) are noise in a job's log.
        if text.trim().is_empty() {
            return;
        }
        match stream {
            Stream::Stdout => self.push(LogLevel::Info, "stdout", text),
            Stream::Stderr => {
                self.push(LogLevel::Warn, "stderr", text);
                if self.stderr_tail.len() == STDERR_TAIL_LINES {
                    self.stderr_tail.pop_front();
                }
                let kept = self.secrets.redact(truncate(text, 500)).into_owned();
                self.stderr_tail.push_back(kept);
            }
        }
    }

    /// Log what is left of unfinished lines (a guest that died mid-line), and how many lines
    /// the daemon's log did not get.
    pub(crate) fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[stream as usize]);
            if !line.is_empty() {
                self.output_line(stream, &line);
            }
        }
        if let (Some(t), n @ 1..) = (&self.trace, self.traced.skipped) {
            tracing::info!(
                target: "spool::plugin",
                plugin = t.plugin.as_str(),
                job_id = t.job_id.as_str(),
                "{n} more log lines of this job were not copied to the daemon's log"
            );
        }
    }

    pub(crate) fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines).into()
    }

    /// The last stderr lines worth quoting in an error, joined on one line. Rust's hint about
    /// RUST_BACKTRACE is noise for a plugin, so it is dropped.
    pub(crate) fn stderr_summary(&self) -> Option<String> {
        let lines: Vec<&str> = self
            .stderr_tail
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE=1`"))
            .collect();
        if lines.is_empty() {
            return None;
        }
        let start = lines.len().saturating_sub(6);
        Some(lines[start..].join(" "))
    }
}

/// A guest line in the daemon's own log, with control characters escaped: a line holding a
/// newline or terminal escapes must not forge or hide daemon log lines.
fn trace_line(t: &TraceNames, level: LogLevel, line: &str) {
    let (plugin, job_id) = (t.plugin.as_str(), t.job_id.as_str());
    let line = crate::text::escape_control(line);
    match level {
        LogLevel::Trace => tracing::trace!(target: "spool::plugin", plugin, job_id, "{line}"),
        LogLevel::Debug => tracing::debug!(target: "spool::plugin", plugin, job_id, "{line}"),
        LogLevel::Info => tracing::info!(target: "spool::plugin", plugin, job_id, "{line}"),
        LogLevel::Warn => tracing::warn!(target: "spool::plugin", plugin, job_id, "{line}"),
        LogLevel::Error => tracing::error!(target: "spool::plugin", plugin, job_id, "{line}"),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The guest's stdout or stderr: every write goes into the job's log lines. Never fails and
/// never blocks; memory is bounded by `JobLog`.
#[derive(Clone)]
pub(crate) struct CapturePipe {
    pub(crate) stream: Stream,
    pub(crate) log: Arc<Mutex<JobLog>>,
}

impl CapturePipe {
    fn write_bytes(&self, bytes: &[u8]) {
        JobLog::lock(&self.log).write(self.stream, bytes);
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// ---- the imports -------------------------------------------------------------------------

/// A follow-up job as either contract version asks for it.
pub(crate) struct FollowupRequest {
    pub(crate) job_type: String,
    pub(crate) payload: String,
    pub(crate) priority: Option<u8>,
    pub(crate) delay_ms: Option<u64>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) unique_key: Option<String>,
}

impl JobState {
    async fn report_progress(&mut self, percent: u8, message: Option<String>) {
        let message = message.map(|m| self.secrets.redact(&m).into_owned());
        self.services.progress(percent.min(100), message).await;
    }

    fn enqueue_followup(&mut self, mut job: FollowupRequest) -> Result<String, String> {
        if self.followups.len() >= MAX_FOLLOWUPS {
            return Err(format!(
                "a job may enqueue at most {MAX_FOLLOWUPS} follow-up jobs"
            ));
        }
        job.payload = self.secrets.redact_json(&job.payload).into_owned();
        let new = validate_followup(job, self.clock.now_ms(), self.max_payload)?;
        let bytes = self.followup_bytes + new.payload.get().len();
        if bytes > MAX_FOLLOWUP_BYTES {
            return Err(format!(
                "the follow-up jobs of one job may hold at most {} MiB of payload together; \
                 pass references to large data instead of the data",
                MAX_FOLLOWUP_BYTES >> 20
            ));
        }
        self.followup_bytes = bytes;
        let id = new.id.clone();
        self.followups.push(new);
        Ok(id)
    }
}

/// The host side of the interfaces both contract versions share, implemented once for the
/// bindings of each (`v1`: spool:plugin@0.1.0, `v2`: spool:plugin@0.2.0).
macro_rules! shared_imports {
    ($v:ident) => {
        impl $v::spool::plugin::types::Host for JobState {}

        impl $v::spool::plugin::log::Host for JobState {
            async fn log(&mut self, level: $v::spool::plugin::log::Level, message: String) {
                use $v::spool::plugin::log::Level as L;
                let level = match level {
                    L::Trace => LogLevel::Trace,
                    L::Debug => LogLevel::Debug,
                    L::Info => LogLevel::Info,
                    L::Warn => LogLevel::Warn,
                    L::Error => LogLevel::Error,
                };
                JobLog::lock(&self.log).guest_log(level, &message);
            }
        }

        impl $v::spool::plugin::progress::Host for JobState {
            async fn report(&mut self, percent: u8, message: Option<String>) {
                self.report_progress(percent, message).await;
            }

            async fn cancelled(&mut self) -> bool {
                self.services.cancelled()
            }
        }

        impl $v::spool::plugin::cache::Host for JobState {
            async fn get(&mut self, key: String) -> Result<Option<String>, String> {
                self.services.cache_get(&key).await
            }

            async fn set(
                &mut self,
                key: String,
                value: String,
                ttl_ms: Option<u64>,
            ) -> Result<(), String> {
                self.services
                    .cache_set(&key, &value, ttl_ms.map(Duration::from_millis))
                    .await
            }

            async fn delete(&mut self, key: String) -> Result<bool, String> {
                self.services.cache_delete(&key).await
            }

            async fn increment(
                &mut self,
                key: String,
                delta: i64,
                ttl_ms: Option<u64>,
            ) -> Result<i64, String> {
                self.services
                    .cache_increment(&key, delta, ttl_ms.map(Duration::from_millis))
                    .await
            }
        }

        impl $v::spool::plugin::enqueue::Host for JobState {
            async fn enqueue(
                &mut self,
                job: $v::spool::plugin::types::NewJob,
            ) -> Result<String, String> {
                self.enqueue_followup(FollowupRequest {
                    job_type: job.job_type,
                    payload: job.payload,
                    priority: job.priority,
                    delay_ms: job.delay_ms,
                    max_attempts: job.max_attempts,
                    unique_key: job.unique_key,
                })
            }
        }

        impl $v::spool::plugin::config::Host for JobState {
            async fn get(&mut self, name: String) -> Option<String> {
                self.config.get(&name).cloned()
            }
        }
    };
}

shared_imports!(v1);
shared_imports!(v2);

impl v2::spool::plugin::secrets::Host for JobState {
    async fn get(&mut self, name: String) -> Option<String> {
        self.secrets.get(&name).map(str::to_string)
    }
}

/// Check a follow-up job request (with the same rules as any enqueue) and turn it into a
/// `NewJob` with a fresh id.
pub(crate) fn validate_followup(
    job: FollowupRequest,
    now_ms: i64,
    max_payload: usize,
) -> Result<NewJob, String> {
    let invalid = |e: job::JobError| format!("invalid follow-up job: {e}");
    let payload = job::parse_payload(&job.payload, max_payload).map_err(invalid)?;
    let run_at = match job.delay_ms {
        Some(0) | None => None,
        Some(ms) => Some(now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))),
    };
    let new = NewJob {
        id: job::new_job_id(),
        job_type: job.job_type,
        payload,
        priority: job.priority.unwrap_or(job::DEFAULT_PRIORITY),
        max_attempts: job.max_attempts.unwrap_or(job::DEFAULT_MAX_ATTEMPTS),
        run_at,
        timeout_ms: None,
        unique_key: job.unique_key,
        backoff: None,
        unique_for_ms: None,
        debounce_ms: None,
    };
    new.validate(max_payload).map_err(invalid)?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> JobLog {
        JobLog::new(Arc::new(super::super::NoServices), None, Arc::default())
    }

    #[test]
    fn output_is_split_into_lines_across_writes() {
        let mut l = log();
        l.write(Stream::Stdout, b"hel");
        l.write(Stream::Stdout, b"lo\nwor");
        l.write(Stream::Stderr, b"oops\n");
        l.finish();
        assert_eq!(
            l.take_lines(),
            vec!["[stdout] hello", "[stderr] oops", "[stdout] wor"]
        );
    }

    #[test]
    fn logs_keep_only_the_last_lines() {
        let mut l = log();
        for i in 0..(job::MAX_LOG_LINES + 50) {
            l.guest_log(LogLevel::Info, &format!("line {i}"));
        }
        let lines = l.take_lines();
        assert_eq!(lines.len(), job::MAX_LOG_LINES);
        assert_eq!(lines[0], "[info] line 50");
    }

    #[test]
    fn a_chatty_job_copies_only_its_budget_into_the_daemon_log() {
        let trace = TraceNames {
            plugin: "chatty".into(),
            job_id: "j1".into(),
        };
        let mut l = JobLog::new(
            Arc::new(super::super::NoServices),
            Some(trace),
            Arc::default(),
        );
        for i in 0..10_000 {
            l.guest_log(LogLevel::Info, &format!("line {i}"));
        }
        assert_eq!(l.traced.lines, TRACE_MAX_LINES);
        assert_eq!(l.traced.skipped, 10_000 - TRACE_MAX_LINES);
        assert_eq!(l.take_lines().len(), job::MAX_LOG_LINES);

        let mut l = JobLog::new(
            Arc::new(super::super::NoServices),
            Some(TraceNames {
                plugin: "wide".into(),
                job_id: "j2".into(),
            }),
            Arc::default(),
        );
        for _ in 0..100 {
            l.write(Stream::Stdout, &[b'x'; MAX_LINE_BYTES]);
        }
        assert!(l.traced.bytes <= TRACE_MAX_BYTES);
        assert!(l.traced.skipped > 0);
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut l = log();
        l.write(Stream::Stderr, &vec![b'x'; 3 * MAX_LINE_BYTES]);
        let lines = l.take_lines();
        assert!(lines.iter().all(|x| x.len() <= MAX_LINE_BYTES + 10));
    }

    #[test]
    fn stderr_summary_drops_the_backtrace_hint() {
        let mut l = log();
        l.write(
            Stream::Stderr,
            b"thread '<unnamed>' panicked at src/lib.rs:9:5:\nfixture panic: boom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        );
        assert_eq!(
            l.stderr_summary().as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:9:5: fixture panic: boom")
        );
    }

    fn new_job(payload: &str, priority: Option<u8>) -> v1::spool::plugin::types::NewJob {
        v1::spool::plugin::types::NewJob {
            job_type: "next".into(),
            payload: payload.into(),
            priority,
            delay_ms: Some(1000),
            max_attempts: None,
            unique_key: None,
        }
    }

    fn job_state() -> JobState {
        let services: Arc<dyn JobServices> = Arc::new(super::super::NoServices);
        let now = std::time::Instant::now();
        let log = Arc::new(Mutex::new(JobLog::new(
            services.clone(),
            None,
            Arc::default(),
        )));
        JobState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(64 << 20),
            deadline: Deadline::new(now, Duration::from_secs(1), Duration::from_secs(1)),
            stop: None,
            services: services.clone(),
            config: Arc::new(BTreeMap::new()),
            log: log.clone(),
            followups: Vec::new(),
            followup_bytes: 0,
            max_payload: job::DEFAULT_MAX_PAYLOAD_BYTES,
            clock: Arc::new(job::SystemClock),
            secrets: Arc::default(),
            http_ctx: WasiHttpCtx::new(),
            http: JobHttp::new(super::super::http::HttpPolicy::denying("test"), log),
        }
    }

    #[tokio::test]
    async fn followups_are_capped_by_their_total_payload_size() {
        let mut state = job_state();
        let payload = format!("\"{}\"", "x".repeat(job::DEFAULT_MAX_PAYLOAD_BYTES - 2));
        let fits = MAX_FOLLOWUP_BYTES / payload.len();
        for _ in 0..fits {
            let job = new_job(&payload, None);
            v1::spool::plugin::enqueue::Host::enqueue(&mut state, job)
                .await
                .unwrap();
        }
        let e = v1::spool::plugin::enqueue::Host::enqueue(&mut state, new_job(&payload, None))
            .await
            .unwrap_err();
        assert!(e.contains("at most 16 MiB of payload together"), "{e}");
        assert_eq!(state.followups.len(), fits);
        assert_eq!(state.followup_bytes, fits * payload.len());
    }

    fn request(payload: &str, priority: Option<u8>) -> FollowupRequest {
        let j = new_job(payload, priority);
        FollowupRequest {
            job_type: j.job_type,
            payload: j.payload,
            priority: j.priority,
            delay_ms: j.delay_ms,
            max_attempts: j.max_attempts,
            unique_key: j.unique_key,
        }
    }

    #[test]
    fn followups_are_checked_against_the_daemons_max_payload() {
        let payload = "\"0123456789\"";
        assert!(validate_followup(request(payload, None), 0, 8).is_err());
        assert!(validate_followup(request(payload, None), 0, 64).is_ok());
    }

    #[test]
    fn followups_are_validated() {
        let ok = validate_followup(
            request("{\"a\":1}", Some(3)),
            1_000,
            job::DEFAULT_MAX_PAYLOAD_BYTES,
        )
        .unwrap();
        assert_eq!(ok.priority, 3);
        assert_eq!(ok.run_at, Some(2_000));
        assert_eq!(ok.max_attempts, job::DEFAULT_MAX_ATTEMPTS);
        assert!(!ok.id.is_empty());
        let e = validate_followup(request("{nope", None), 0, job::DEFAULT_MAX_PAYLOAD_BYTES)
            .unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = validate_followup(request("1", Some(11)), 0, job::DEFAULT_MAX_PAYLOAD_BYTES)
            .unwrap_err();
        assert!(e.contains("invalid priority `11`"), "{e}");
        let e = validate_followup(request("1", Some(0)), 0, job::DEFAULT_MAX_PAYLOAD_BYTES)
            .unwrap_err();
        assert!(e.contains("invalid priority `0`"), "{e}");
    }
}
