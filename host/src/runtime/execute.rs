//! Running one job: a fresh `Store` and instance from the plugin's `HandlerPre`, the memory
//! limiter, the epoch callback (yield to tokio every tick, interrupt past the deadline or a
//! cancel's grace period), a watchdog for guests stuck in host calls, and turning the end of
//! the call into an `Outcome` with a message a user can act on.

use super::bindings::{v1, v2};
use super::engine::{Pre, RuntimeInner, one_line};
use super::host_api::{CapturePipe, JobLog, JobState, Stream, TraceNames};
use super::http::JobHttp;
use super::limits::{Deadline, MemoryLimiter, StopReason};
use super::reuse::{self, Warm};
use super::{CrashKind, Execution, JobInput, JobServices, Outcome, PluginCode};
use serde_json::value::RawValue;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::WasiHttpCtx;

/// Extra time the watchdog gives the epoch path before it drops the call itself. Epoch
/// interrupts give a clean trap; the watchdog is for guests blocked in a host call, where
/// epochs never fire.
const WATCHDOG_SLACK: Duration = Duration::from_millis(20);

/// How often the watchdog looks at the cancel flag while a guest sits in a host call.
const WATCHDOG_POLL: Duration = Duration::from_millis(100);

/// How often an instantiation that found the instance pool full is tried again, and the
/// first pause (doubling, at most `POOL_RETRY_MAX_PAUSE`): about 1.5 s in all. The pool has
/// room for every job the instance semaphore lets in, but a slot freed by an earlier job sits
/// in wasmtime's decommit queue until some thread flushes it; a flush running on another
/// thread at that moment makes the allocation fail although the slot is on its way back
/// (engine.rs gives the pool headroom for that queue; this covers what headroom misses).
const POOL_RETRIES: u32 = 20;
const POOL_RETRY_PAUSE: Duration = Duration::from_millis(1);
const POOL_RETRY_MAX_PAUSE: Duration = Duration::from_millis(100);

/// Resources (streams, requests, pollables...) one job may hold at once; wasmtime's default is
/// a million, each kept in host memory outside the guest's limit.
const MAX_RESOURCES: usize = 10_000;

/// Bytes one call from the guest into the host may carry: 16 MiB, or the largest value we
/// accept (a follow-up payload or cache value, `max_payload`) twice over plus room for the rest
/// of the call when that is more; instead of wasmtime's 128 MiB, which the host would allocate
/// outside the guest's memory limit.
fn hostcall_fuel(max_payload: usize) -> usize {
    max_payload
        .saturating_mul(2)
        .saturating_add(4 << 20)
        .max(16 << 20)
}

/// Why `handle` did not succeed, as either contract version says it.
#[derive(Debug)]
enum GuestError {
    Retry {
        message: String,
        after_ms: Option<u64>,
    },
    Fail(String),
    RateLimited {
        message: String,
        after_ms: Option<u64>,
    },
}

/// How the call ended, before classification.
type CallResult = Result<wasmtime::Result<Result<String, GuestError>>, StopReason>;

/// An instance of either contract version.
pub(crate) enum Instance {
    V1(v1::Handler),
    V2(v2::Handler),
}

impl Instance {
    async fn new(pre: &Pre, store: &mut Store<JobState>) -> wasmtime::Result<Instance> {
        Ok(match pre {
            Pre::V1(p) => Instance::V1(p.instantiate_async(store).await?),
            Pre::V2(p) => Instance::V2(p.instantiate_async(store).await?),
        })
    }

    async fn call(
        &self,
        store: &mut Store<JobState>,
        job: &JobInput,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        macro_rules! guest_job {
            ($v:ident) => {
                $v::Job {
                    id: job.id.clone(),
                    job_type: job.job_type.clone(),
                    payload: job.payload.clone(),
                    attempt: job.attempt,
                    max_attempts: job.max_attempts,
                    priority: job.priority,
                    created_at_ms: job.created_at_ms,
                    unique_key: job.unique_key.clone(),
                }
            };
        }
        Ok(match self {
            Instance::V1(h) => h
                .call_handle(store, &guest_job!(v1))
                .await?
                .map_err(|e| match e {
                    v1::spool::plugin::types::JobError::Retry(i) => GuestError::Retry {
                        message: i.message,
                        after_ms: i.after_ms,
                    },
                    v1::spool::plugin::types::JobError::Fail(m) => GuestError::Fail(m),
                }),
            Instance::V2(h) => h
                .call_handle(store, &guest_job!(v2))
                .await?
                .map_err(|e| match e {
                    v2::spool::plugin::types::JobError::Retry(i) => GuestError::Retry {
                        message: i.message,
                        after_ms: i.after_ms,
                    },
                    v2::spool::plugin::types::JobError::Fail(m) => GuestError::Fail(m),
                    v2::spool::plugin::types::JobError::RateLimited(i) => GuestError::RateLimited {
                        message: i.message,
                        after_ms: i.after_ms,
                    },
                }),
        })
    }
}

pub(crate) async fn execute(
    inner: &RuntimeInner,
    code: &PluginCode,
    input: JobInput,
    services: Arc<dyn JobServices>,
) -> Execution {
    // The semaphore is never closed, so this only waits for a free instance slot.
    let _slot = inner.slots.acquire().await.ok();
    let timeout = input.timeout.unwrap_or(code.timeout);
    let trace = inner.cfg.trace_guest_logs.then(|| TraceNames {
        plugin: code.name.to_string(),
        job_id: input.id.clone(),
    });
    let start = Instant::now();
    // A kept instance of a plugin that reuses them, readied for this job; else a fresh store.
    let warm = code.warm.as_ref().and_then(|pool| pool.take());
    let (mut store, mut handler, served, log) = match warm {
        Some(Warm {
            mut store,
            instance,
            jobs,
            ..
        }) => {
            let log = store.data().log.clone();
            JobLog::lock(&log).begin(services.clone(), trace);
            store.data_mut().begin_job(
                services.clone(),
                Deadline::new(start, timeout, inner.cfg.cancel_grace),
                JobHttp::new(code.http.clone(), log.clone()),
            );
            store.set_epoch_deadline(1);
            (store, Some(instance), jobs, log)
        }
        None => {
            let log = Arc::new(Mutex::new(JobLog::new(
                services.clone(),
                trace,
                code.secrets.clone(),
            )));
            let store = new_store(inner, code, timeout, start, services.clone(), log.clone());
            (store, None, 0, log)
        }
    };
    let fresh_store = || new_store(inner, code, timeout, start, services.clone(), log.clone());
    let job = input;
    // Set once a new instance is ready (None: the job ran on a kept instance, or was stopped
    // or failed before its instance was made).
    let mut instantiate = None;

    let result: CallResult = {
        let call = async {
            let instance = match handler.take() {
                Some(instance) => instance,
                None => {
                    let mut pause = POOL_RETRY_PAUSE;
                    let mut tries = 0;
                    let made = loop {
                        match Instance::new(&code.pre, &mut store).await {
                            Err(e)
                                if e.is::<PoolConcurrencyLimitError>() && tries < POOL_RETRIES =>
                            {
                                // A failed instantiation may keep what it got in its store:
                                // start again from a fresh one, after the in-flight flush had
                                // its time.
                                tries += 1;
                                store = fresh_store();
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(POOL_RETRY_MAX_PAUSE);
                            }
                            other => break other?,
                        }
                    };
                    instantiate = Some(start.elapsed());
                    made
                }
            };
            let r = instance.call(&mut store, &job).await;
            // Back in hand only when the call ran to its end (a stopped call drops it).
            handler = Some(instance);
            r
        };
        tokio::select! {
            biased;
            r = call => Ok(r),
            reason = watchdog(Deadline::new(start, timeout.saturating_add(WATCHDOG_SLACK), inner.cfg.cancel_grace.saturating_add(WATCHDOG_SLACK)), services.clone()) => Err(reason),
        }
    };
    let duration = start.elapsed();
    // Whether `handle` came back on its own (with a result or an error of the plugin's):
    // only then is the instance in a state another job may start from.
    let returned = matches!(result, Ok(Ok(_)));

    let state = store.data_mut();
    let followups = std::mem::take(&mut state.followups);
    let stop = state.stop;
    let peak_memory = state.limiter.peak();
    let used_memory = state.limiter.used();
    let refused = state.limiter.refused().is_some();
    let mut job_log = JobLog::lock(&log);
    job_log.finish();
    let outcome = redact(
        classify(
            result,
            stop,
            &state.limiter,
            &job_log,
            timeout,
            inner.cfg.cancel_grace,
            inner.cfg.max_payload,
        ),
        &code.secrets,
    );
    let logs = job_log.take_lines();
    drop(job_log);
    let served = served.saturating_add(1);
    let mut keep = code.warm.is_some()
        && returned
        && !refused
        && !matches!(
            outcome,
            Outcome::Crashed { .. } | Outcome::NoCapacity { .. }
        )
        && served < reuse::MAX_JOBS
        && reuse::memory_allows_reuse(used_memory, code.memory);
    keep = keep && !store.data_mut().holds_http();
    match (&code.warm, handler) {
        (Some(pool), Some(instance)) if keep => {
            // Nothing of this job stays reachable from the idle instance.
            JobLog::lock(&log).begin(Arc::new(super::NoServices), None);
            store.data_mut().end_job();
            pool.put(Warm::new(store, instance, served));
        }
        _ => drop(store),
    }
    Execution {
        outcome,
        logs,
        followups,
        duration,
        instantiate,
        peak_memory,
    }
}

/// The plugin's secrets taken out of what the attempt leaves behind: its result and its error
/// message (which may quote the guest's own text).
fn redact(outcome: Outcome, secrets: &super::Secrets) -> Outcome {
    if secrets.is_empty() {
        return outcome;
    }
    let text = |s: String| match secrets.redact(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(r) => r,
    };
    match outcome {
        Outcome::Success(raw) => match secrets.redact_json(raw.get()) {
            std::borrow::Cow::Borrowed(_) => Outcome::Success(raw),
            std::borrow::Cow::Owned(json) => match RawValue::from_string(json) {
                Ok(raw) => Outcome::Success(raw),
                Err(e) => Outcome::Crashed {
                    error: format!("the plugin's result could not be redacted: {e}"),
                    kind: CrashKind::InvalidResult,
                },
            },
        },
        Outcome::Retry { error, after } => Outcome::Retry {
            error: text(error),
            after,
        },
        Outcome::RateLimited { error, after } => Outcome::RateLimited {
            error: text(error),
            after,
        },
        Outcome::Fail { error } => Outcome::Fail { error: text(error) },
        Outcome::Crashed { error, kind } => Outcome::Crashed {
            error: text(error),
            kind,
        },
        Outcome::NoCapacity { error } => Outcome::NoCapacity { error },
    }
}

/// A fresh `Store` for one job: WASI with captured stdout/stderr and nothing else, the memory
/// limiter, and the epoch callback.
fn new_store(
    inner: &RuntimeInner,
    code: &PluginCode,
    timeout: Duration,
    start: Instant,
    services: Arc<dyn JobServices>,
    log: Arc<Mutex<JobLog>>,
) -> Store<JobState> {
    let wasi = WasiCtx::builder()
        .stdout(CapturePipe {
            stream: Stream::Stdout,
            log: log.clone(),
        })
        .stderr(CapturePipe {
            stream: Stream::Stderr,
            log: log.clone(),
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let http = JobHttp::new(code.http.clone(), log.clone());
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    let state = JobState {
        wasi,
        table,
        limiter: MemoryLimiter::new(code.memory),
        deadline: Deadline::new(start, timeout, inner.cfg.cancel_grace),
        stop: None,
        services,
        config: code.config.clone(),
        log,
        followups: Vec::new(),
        followup_bytes: 0,
        max_payload: inner.cfg.max_payload,
        clock: inner.cfg.clock.clone(),
        secrets: code.secrets.clone(),
        http_ctx: WasiHttpCtx::new(),
        http,
    };
    let mut store = Store::new(&code.engine, state);
    store.set_hostcall_fuel(hostcall_fuel(inner.cfg.max_payload));
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| {
        let st = cx.data_mut();
        let cancelled = st.services.cancelled();
        Ok(match st.deadline.check(Instant::now(), cancelled) {
            Some(reason) => {
                st.stop = Some(reason);
                UpdateDeadline::Interrupt
            }
            // Yield every tick so a spinning guest shares its worker thread.
            None => UpdateDeadline::Yield(1),
        })
    });
    store
}

/// `n` instances of `code`, made outside the instance semaphore and kept until the stores
/// drop: a full pool on demand, as a slot in wasmtime's decommit queue makes one for a moment.
/// For tests only.
pub(crate) async fn occupy(
    inner: &RuntimeInner,
    code: &PluginCode,
    n: usize,
) -> wasmtime::Result<Vec<Store<JobState>>> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let services: Arc<dyn JobServices> = Arc::new(super::NoServices);
        let log = Arc::new(Mutex::new(JobLog::new(
            services.clone(),
            None,
            code.secrets.clone(),
        )));
        let hour = Duration::from_secs(3600);
        let mut store = new_store(inner, code, hour, Instant::now(), services, log);
        Instance::new(&code.pre, &mut store).await?;
        held.push(store);
    }
    Ok(held)
}

/// Where one job's time goes, summed over `iterations` jobs: store setup, instantiation, the
/// call, and dropping the store (which returns the instance slot to the pool). For the
/// benchmark only.
pub(crate) async fn phase_times(
    inner: &RuntimeInner,
    code: &PluginCode,
    input: &JobInput,
    iterations: u32,
) -> wasmtime::Result<[Duration; 4]> {
    let mut t = [Duration::ZERO; 4];
    let services: Arc<dyn JobServices> = Arc::new(super::NoServices);
    for _ in 0..iterations {
        let a = Instant::now();
        let log = Arc::new(Mutex::new(JobLog::new(
            services.clone(),
            None,
            code.secrets.clone(),
        )));
        let mut store = new_store(inner, code, code.timeout, a, services.clone(), log);
        let b = Instant::now();
        let handler = Instance::new(&code.pre, &mut store).await?;
        let c = Instant::now();
        let _ = handler.call(&mut store, input).await?;
        let d = Instant::now();
        drop(store);
        let e = Instant::now();
        for (slot, took) in t.iter_mut().zip([b - a, c - b, d - c, e - d]) {
            *slot += took;
        }
    }
    Ok(t)
}

/// Stops a job the epoch callback cannot reach: one blocked in a host call (sleep, a slow
/// cache) past its deadline, or past the grace period after a cancel.
async fn watchdog(mut deadline: Deadline, services: Arc<dyn JobServices>) -> StopReason {
    loop {
        let now = Instant::now();
        if let Some(reason) = deadline.check(now, services.cancelled()) {
            return reason;
        }
        let next = deadline.deadline.min(now + WATCHDOG_POLL);
        tokio::time::sleep_until(next.into()).await;
    }
}

fn classify(
    result: CallResult,
    stop: Option<StopReason>,
    limiter: &MemoryLimiter,
    log: &JobLog,
    timeout: Duration,
    cancel_grace: Duration,
    max_result: usize,
) -> Outcome {
    let crashed = |kind, error: String| Outcome::Crashed { error, kind };
    let stopped = |reason| match reason {
        StopReason::Timeout => crashed(
            CrashKind::Timeout,
            format!(
                "job timed out after {}",
                humantime::format_duration(timeout)
            ),
        ),
        StopReason::Cancelled => crashed(
            CrashKind::Cancelled,
            format!(
                "job was cancelled and the plugin did not stop within {}",
                humantime::format_duration(cancel_grace)
            ),
        ),
    };
    let out_of_memory = || crashed(CrashKind::OutOfMemory, limiter.message());
    match result {
        Err(reason) => stopped(reason),
        Ok(Err(error)) if error.is::<PoolConcurrencyLimitError>() => Outcome::NoCapacity {
            error: format!(
                "no free instance slot after {POOL_RETRIES} tries ({error}): the host ran out \
                 of instance capacity, so the plugin did not run and is not at fault (the pool \
                 is sized for every worker: please report this)"
            ),
        },
        Ok(Err(error)) => {
            if let Some(reason) = stop {
                return stopped(reason);
            }
            if limiter.refused().is_some() {
                return out_of_memory();
            }
            if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
                return stopped(StopReason::Timeout);
            }
            // Only the trap itself (not the wasm backtrace around it) keeps the message on
            // one line; the stderr tail carries a panic's own message.
            let what = match error.downcast_ref::<Trap>() {
                Some(trap) => trap.to_string(),
                None => one_line(&format!("{error:#}")),
            };
            let message = match log.stderr_summary() {
                Some(stderr) => format!("plugin crashed ({what}): {stderr}"),
                None => format!("plugin crashed ({what})"),
            };
            crashed(CrashKind::Trap, message)
        }
        Ok(Ok(Ok(result))) => {
            if result.len() > max_result {
                return crashed(
                    CrashKind::InvalidResult,
                    format!(
                        "the plugin returned a result of {} bytes; the limit is {} bytes \
                         (the daemon's `max_payload`)",
                        result.len(),
                        max_result
                    ),
                );
            }
            match serde_json::from_str::<Box<RawValue>>(&result) {
                Ok(raw) => Outcome::Success(raw),
                Err(e) => crashed(
                    CrashKind::InvalidResult,
                    format!(
                        "the plugin returned a result that is not valid JSON ({e}); return JSON text, `null` for nothing"
                    ),
                ),
            }
        }
        Ok(Ok(Err(_))) if limiter.refused().is_some() => out_of_memory(),
        Ok(Ok(Err(GuestError::Retry { message, after_ms }))) => Outcome::Retry {
            error: message,
            after: after_ms.map(Duration::from_millis),
        },
        Ok(Ok(Err(GuestError::Fail(error)))) => Outcome::Fail { error },
        Ok(Ok(Err(GuestError::RateLimited { message, after_ms }))) => Outcome::RateLimited {
            error: message,
            after: after_ms.map(Duration::from_millis),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_calls_carry_at_most_16_mib_or_two_payloads() {
        assert_eq!(hostcall_fuel(1 << 20), 16 << 20);
        assert_eq!(hostcall_fuel(64 << 20), 132 << 20);
    }
    use crate::job;

    fn classify_ok(result: &str) -> Outcome {
        let log = JobLog::new(Arc::new(super::super::NoServices), None, Arc::default());
        let limiter = MemoryLimiter::new(64 << 20);
        let t = Duration::from_secs(1);
        classify(
            Ok(Ok(Ok(result.to_string()))),
            None,
            &limiter,
            &log,
            t,
            t,
            job::DEFAULT_MAX_PAYLOAD_BYTES,
        )
    }

    #[test]
    fn a_result_that_is_not_json_is_an_invalid_result() {
        match classify_ok("not json") {
            Outcome::Crashed {
                kind: CrashKind::InvalidResult,
                error,
            } => {
                assert!(
                    error.starts_with("the plugin returned a result that is not valid JSON"),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
        match classify_ok(" {\"ok\": true} ") {
            Outcome::Success(raw) => assert_eq!(raw.get(), "{\"ok\": true}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_grow_turns_a_guest_error_into_out_of_memory() {
        let log = JobLog::new(Arc::new(super::super::NoServices), None, Arc::default());
        let mut limiter = MemoryLimiter::new(64 << 20);
        use wasmtime::ResourceLimiter;
        assert!(!limiter.memory_growing(0, 100 << 20, None).unwrap());
        let t = Duration::from_secs(1);
        let error = GuestError::Fail("malloc failed".into());
        match classify(
            Ok(Ok(Err(error))),
            None,
            &limiter,
            &log,
            t,
            t,
            job::DEFAULT_MAX_PAYLOAD_BYTES,
        ) {
            Outcome::Crashed {
                kind: CrashKind::OutOfMemory,
                error,
            } => {
                assert_eq!(
                    error,
                    "out of memory: the plugin asked for 100 MiB, its limit is 64 MiB"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
