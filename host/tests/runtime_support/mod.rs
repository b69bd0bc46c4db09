//! Helpers shared by the runtime tests (host/tests/runtime*.rs): where the real plugins are,
//! a runtime with test settings, recording job services, and waiting against deadlines.
#![allow(dead_code)]

use spool_host::plugins::{Manifest, PluginEvent};
use spool_host::runtime::{JobInput, JobServices, LogLevel, Runtime, RuntimeConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The folder `scripts/build-plugins.sh` fills: `$SPOOL_TEST_PLUGINS` or `target/plugins`.
pub fn plugins_dir() -> PathBuf {
    let dir = match std::env::var_os("SPOOL_TEST_PLUGINS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
    };
    assert!(
        dir.join("echo.wasm").is_file(),
        "the test plugins are missing from `{}`: run scripts/build-plugins.sh first (or set SPOOL_TEST_PLUGINS)",
        dir.display()
    );
    dir
}

pub fn plugin_path(name: &str) -> PathBuf {
    let p = plugins_dir().join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "plugin `{}` is missing: run scripts/build-plugins.sh",
        p.display()
    );
    p
}

/// The plugin's manifest as installed (or the default when it has none).
pub fn manifest_of(name: &str) -> Manifest {
    match std::fs::read_to_string(plugins_dir().join(format!("{name}.toml"))) {
        Ok(text) => Manifest::parse(&text).unwrap_or_else(|e| panic!("{name}.toml: {e}")),
        Err(_) => Manifest::default(),
    }
}

pub fn runtime() -> Runtime {
    runtime_running(64)
}

/// A runtime with test settings that runs at most `max_instances` jobs at once.
pub fn runtime_running(max_instances: u32) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances,
        trace_guest_logs: false,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

pub fn input(job_type: &str, payload: &str) -> JobInput {
    JobInput {
        id: spool_host::job::new_job_id(),
        job_type: job_type.into(),
        payload: payload.into(),
        attempt: 1,
        max_attempts: 4,
        priority: 5,
        created_at_ms: 0,
        unique_key: None,
        timeout: None,
    }
}

/// Records what a job did with its services; an in-memory cache.
#[derive(Default)]
pub struct TestServices {
    pub cache: Mutex<HashMap<String, String>>,
    pub progress: Mutex<Vec<(u8, Option<String>)>>,
    pub lines: Mutex<Vec<String>>,
    pub cancel: AtomicBool,
}

impl TestServices {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl JobServices for TestServices {
    async fn cache_get(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self.cache.lock().unwrap().get(key).cloned())
    }
    async fn cache_set(
        &self,
        key: &str,
        value: &str,
        _ttl: Option<Duration>,
    ) -> Result<(), String> {
        self.cache.lock().unwrap().insert(key.into(), value.into());
        Ok(())
    }
    async fn cache_delete(&self, key: &str) -> Result<bool, String> {
        Ok(self.cache.lock().unwrap().remove(key).is_some())
    }
    async fn cache_increment(
        &self,
        key: &str,
        delta: i64,
        _ttl: Option<Duration>,
    ) -> Result<i64, String> {
        let mut c = self.cache.lock().unwrap();
        let n = c.get(key).map(|v| v.parse::<i64>().unwrap()).unwrap_or(0) + delta;
        c.insert(key.into(), n.to_string());
        Ok(n)
    }
    async fn progress(&self, percent: u8, message: Option<String>) {
        self.progress.lock().unwrap().push((percent, message));
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
    fn log(&self, _level: LogLevel, line: &str) {
        self.lines.lock().unwrap().push(line.to_string());
    }
}

/// Wait for a plugin event matching `pred`, up to `within`.
pub async fn wait_for_event(
    rx: &mut tokio::sync::broadcast::Receiver<PluginEvent>,
    within: Duration,
    what: &str,
    mut pred: impl FnMut(&PluginEvent) -> bool,
) -> PluginEvent {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(ev)) => seen.push(ev),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event channel closed while waiting for {what}: {e}"),
            Err(_) => panic!("no {what} within {within:?}; events seen: {seen:?}"),
        }
    }
}
