//! The compiled-plugin cache is native code the daemon maps and runs, so it is trusted only
//! when it proves it came from this daemon: a private folder, no symlinks, and a keyed MAC
//! over each artifact and its source.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod runtime_support;

use runtime_support::*;
use spool_host::plugins::LoadedPlugin;
use spool_host::runtime::{CompileSource, NoServices, Outcome, Runtime, RuntimeConfig};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn config(dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_instances: 8,
        trace_guest_logs: false,
        ..Default::default()
    }
}

/// Load `name` from its real file; says whether the cache served it.
async fn load(rt: &Runtime, name: &str) -> (Arc<spool_host::plugins::LoadedPlugin>, CompileSource) {
    let path = plugin_path(name);
    let bytes = std::fs::read(&path).unwrap();
    LoadedPlugin::from_bytes(
        rt,
        name,
        &path,
        bytes,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The `.cwasm` files in the cache, sorted by name.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    files.sort();
    files
}

/// Fill a cache with `echo` and `fail-permanent`; returns their artifact paths.
async fn two_cached_plugins(dir: &Path) -> (PathBuf, PathBuf) {
    let rt = Runtime::new(config(dir)).unwrap();
    load(&rt, "echo").await;
    let before = artifacts(dir);
    load(&rt, "fail-permanent").await;
    let after = artifacts(dir);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(after.len(), 2, "{after:?}");
    let echo = before[0].clone();
    let other = after.into_iter().find(|p| *p != echo).unwrap();
    (echo, other)
}

async fn echo_runs_as_echo(rt: &Runtime) -> CompileSource {
    let (echo, source) = load(rt, "echo").await;
    let ex = rt
        .execute(
            &echo.code,
            input("echo", r#"{"n": 1}"#),
            Arc::new(NoServices),
        )
        .await;
    match &ex.outcome {
        Outcome::Success(raw) => assert_eq!(raw.get(), r#"{"n": 1}"#),
        other => panic!("echo ran another plugin's code: {other:?}"),
    }
    source
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_file_copied_from_another_plugin_is_recompiled_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let (echo, other) = two_cached_plugins(dir.path()).await;
    std::fs::copy(&other, &echo).unwrap();
    let rt = Runtime::new(config(dir.path())).unwrap();
    assert_eq!(
        echo_runs_as_echo(&rt).await,
        CompileSource::CompiledAndCached
    );
    // Replaced with a good artifact: the next start loads it from the cache again.
    let rt = Runtime::new(config(dir.path())).unwrap();
    assert_eq!(echo_runs_as_echo(&rt).await, CompileSource::Cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_cache_file_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (echo, other) = two_cached_plugins(dir.path()).await;
    std::fs::remove_file(&echo).unwrap();
    std::os::unix::fs::symlink(&other, &echo).unwrap();
    let rt = Runtime::new(config(dir.path())).unwrap();
    assert_eq!(
        echo_runs_as_echo(&rt).await,
        CompileSource::CompiledAndCached
    );
    assert!(
        !std::fs::symlink_metadata(&echo)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced by a real file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_folder_writable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Runtime::new(config(&cache)).unwrap_err().to_string();
    assert!(e.contains("writable by other users"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_files_are_private_to_the_daemon_user() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("a/cache");
    let rt = Runtime::new(config(&cache)).unwrap();
    load(&rt, "echo").await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}
