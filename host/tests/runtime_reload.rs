//! The plugin registry and hot reload, in a temporary plugins folder with the real plugins:
//! a reload under load finishes every job (in-flight jobs on the old version, later jobs on
//! the new), bad files are reported while the old version keeps serving, deleting unloads,
//! manifests are strict, two plugins cannot claim one type, and the polling fallback works.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod runtime_support;

use runtime_support::*;
use spool_host::plugins::{PluginEvent, PluginRegistry, PluginState};
use spool_host::runtime::{NoServices, Outcome};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

fn copy_plugin(name: &str, dir: &Path, as_name: &str) {
    std::fs::copy(plugin_path(name), dir.join(format!("{as_name}.wasm"))).unwrap();
}

/// Replace a file the way deploy tools should: write a dot-temp file, then rename it.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn is_loaded(name: &'static str) -> impl FnMut(&PluginEvent) -> bool {
    move |e| matches!(e, PluginEvent::Loaded { name: n, .. } if n == name)
}

fn failed_error(e: &PluginEvent) -> &str {
    match e {
        PluginEvent::Failed { error, .. } => error,
        other => panic!("expected Failed, got {other:?}"),
    }
}

async fn version_of(registry: &PluginRegistry) -> String {
    let plugin = registry.for_type("version").expect("version is loaded");
    let ex = registry
        .runtime()
        .execute(&plugin.code, input("version", "{}"), Arc::new(NoServices))
        .await;
    match ex.outcome {
        Outcome::Success(raw) => {
            serde_json::from_str::<serde_json::Value>(raw.get()).unwrap()["version"]
                .as_str()
                .unwrap()
                .to_string()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_all_loads_plugins_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin("echo", dir.path(), "echo");
    copy_plugin("config-echo", dir.path(), "config-echo");
    std::fs::copy(
        plugins_dir().join("config-echo.toml"),
        dir.path().join("config-echo.toml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), "definitely not wasm").unwrap();
    std::fs::write(dir.path().join(".hidden.wasm"), "ignored").unwrap();
    std::fs::write(dir.path().join("echo.wasm.part"), "ignored").unwrap();
    let registry = PluginRegistry::new(runtime(), dir.path().to_path_buf());
    let events = registry.load_all().await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(registry.types(), vec!["config-echo", "echo"]);
    let list = registry.list();
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["config-echo", "echo", "garbage"]);
    let garbage = &list[2];
    assert_eq!(garbage.state, PluginState::Failed);
    let error = garbage.error.as_deref().unwrap();
    assert!(
        error.starts_with("failed to load plugin `garbage` from `"),
        "{error}"
    );
    assert!(error.contains("it is not a WebAssembly file"), "{error}");
    assert_eq!(list[1].state, PluginState::Loaded);
    assert_eq!(list[1].version.as_deref().map(str::len), Some(12));

    // Nothing changed: a second scan does nothing.
    assert!(registry.load_all().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_while_jobs_run_finishes_every_job() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin("version", dir.path(), "version");
    let registry = PluginRegistry::new(runtime(), dir.path().to_path_buf());
    registry.load_all().await;
    let mut rx = registry.subscribe();
    let _watcher = registry.spawn_watcher().unwrap();
    let old = registry.for_type("version").unwrap();
    assert_eq!(version_of(&registry).await, "v1");

    // A stream of jobs, 16 at a time; the manifest changes after job 100.
    let mut jobs = tokio::task::JoinSet::new();
    let mut launched = 0usize;
    let mut swapped_at: Option<usize> = None;
    let deadline = Instant::now() + WAIT;
    let mut results: Vec<(usize, bool, Result<String, String>)> = Vec::new();
    while launched < 200 || swapped_at.is_none_or(|s| launched < s + 50) {
        assert!(
            Instant::now() < deadline,
            "the reload did not happen within {WAIT:?}"
        );
        if launched == 100 {
            write_atomically(
                &dir.path().join("version.toml"),
                b"[config]\nversion = \"v2\"\n",
            );
        }
        if swapped_at.is_none() {
            while let Ok(e) = rx.try_recv() {
                if is_loaded("version")(&e) {
                    swapped_at = Some(launched);
                }
            }
        }
        let plugin = registry.for_type("version").unwrap();
        let after_swap = swapped_at.is_some();
        let rt = registry.runtime().clone();
        let n = launched;
        jobs.spawn(async move {
            let ex = rt
                .execute(&plugin.code, input("version", "{}"), Arc::new(NoServices))
                .await;
            let result = match ex.outcome {
                Outcome::Success(raw) => Ok(serde_json::from_str::<serde_json::Value>(raw.get())
                    .unwrap()["version"]
                    .as_str()
                    .unwrap()
                    .to_string()),
                other => Err(format!("{other:?}")),
            };
            (n, after_swap, result)
        });
        launched += 1;
        while jobs.len() >= 16 {
            results.push(jobs.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(r) = jobs.join_next().await {
        results.push(r.unwrap());
    }
    assert_eq!(results.len(), launched);
    assert!(launched >= 200);
    for (n, after_swap, result) in &results {
        let v = result
            .as_ref()
            .unwrap_or_else(|e| panic!("job {n} failed: {e}"));
        if *n < 100 {
            assert_eq!(v, "v1", "job {n} started before the change");
        }
        if *after_swap {
            assert_eq!(v, "v2", "job {n} started after the reload");
        }
    }
    // A job pinned to the old version before the swap still runs the old version.
    let ex = registry
        .runtime()
        .execute(&old.code, input("version", "{}"), Arc::new(NoServices))
        .await;
    match ex.outcome {
        Outcome::Success(raw) => assert_eq!(raw.get(), r#"{"version":"v1"}"#),
        other => panic!("{other:?}"),
    }

    // A different .wasm under the same name is a new plugin version.
    let before = registry.for_type("version").unwrap().version.clone();
    write_atomically(
        &dir.path().join("version.wasm"),
        &std::fs::read(plugin_path("config-echo")).unwrap(),
    );
    let e = wait_for_event(
        &mut rx,
        WAIT,
        "the reload of version.wasm",
        is_loaded("version"),
    )
    .await;
    match e {
        PluginEvent::Loaded { version, .. } => assert_ne!(version, before),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_reported_and_the_old_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin("version", dir.path(), "version");
    let registry = PluginRegistry::new(runtime(), dir.path().to_path_buf());
    let mut rx = registry.subscribe();
    registry.load_all().await;
    let _watcher = registry.spawn_watcher().unwrap();
    let good = registry.for_type("version").unwrap().version.clone();
    let wasm = dir.path().join("version.wasm");

    // Garbage written over the plugin in place.
    std::fs::write(&wasm, "oops, a text file").unwrap();
    let e = wait_for_event(&mut rx, WAIT, "a failure for garbage", |e| {
        matches!(e, PluginEvent::Failed { .. })
    })
    .await;
    let error = failed_error(&e);
    assert!(
        error.starts_with("failed to load plugin `version` from `"),
        "{error}"
    );
    assert!(
        error.contains("version.wasm`: it is not a WebAssembly file"),
        "{error}"
    );
    assert!(!error.contains('\n'));
    assert_eq!(registry.for_type("version").unwrap().version, good);
    assert_eq!(version_of(&registry).await, "v1");

    // A copy cut short (a deploy that died half-way).
    let bytes = std::fs::read(plugin_path("config-echo")).unwrap();
    std::fs::write(&wasm, &bytes[..bytes.len() / 3]).unwrap();
    let e = wait_for_event(&mut rx, WAIT, "a failure for a truncated copy", |e| {
        matches!(e, PluginEvent::Failed { .. })
    })
    .await;
    assert!(
        failed_error(&e).contains("it is truncated or corrupt"),
        "{e:?}"
    );
    assert_eq!(registry.for_type("version").unwrap().version, good);
    let status = registry
        .list()
        .into_iter()
        .find(|s| s.name == "version")
        .unwrap();
    assert_eq!(status.state, PluginState::Loaded);
    assert!(
        status
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("truncated"),
        "{status:?}"
    );

    // A component of another world.
    let other = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/runtime_support/fixtures/other-world.wasm");
    write_atomically(&wasm, &std::fs::read(other).unwrap());
    let e = wait_for_event(&mut rx, WAIT, "a failure for another world", |e| {
        matches!(e, PluginEvent::Failed { .. })
    })
    .await;
    assert!(
        failed_error(&e).contains("it does not export `spool:plugin/handler@0.2.0`"),
        "{e:?}"
    );
    assert_eq!(version_of(&registry).await, "v1");

    // The good file again: loaded, the failure is cleared.
    write_atomically(&wasm, &std::fs::read(plugin_path("version")).unwrap());
    wait_for_event(
        &mut rx,
        WAIT,
        "the good file loading again",
        is_loaded("version"),
    )
    .await;
    let status = registry
        .list()
        .into_iter()
        .find(|s| s.name == "version")
        .unwrap();
    assert_eq!(status.error, None);

    // A new garbage file is reported on its own and changes nothing else.
    std::fs::write(dir.path().join("junk.wasm"), [0u8; 64]).unwrap();
    let e = wait_for_event(&mut rx, WAIT, "a failure for junk.wasm", |e| {
        matches!(e, PluginEvent::Failed { .. })
    })
    .await;
    assert!(
        matches!(&e, PluginEvent::Failed { name, .. } if name == "junk"),
        "{e:?}"
    );
    assert_eq!(registry.types(), vec!["version"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_plugin_unloads_it() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin("echo", dir.path(), "echo");
    copy_plugin("version", dir.path(), "version");
    let registry = PluginRegistry::new(runtime(), dir.path().to_path_buf());
    let mut rx = registry.subscribe();
    registry.load_all().await;
    let _watcher = registry.spawn_watcher().unwrap();
    let pinned = registry.for_type("echo").unwrap();
    std::fs::remove_file(dir.path().join("echo.wasm")).unwrap();
    let e = wait_for_event(&mut rx, WAIT, "echo unloading", |e| {
        matches!(e, PluginEvent::Unloaded { .. })
    })
    .await;
    assert_eq!(
        e,
        PluginEvent::Unloaded {
            name: "echo".into()
        }
    );
    assert!(registry.for_type("echo").is_none());
    assert_eq!(registry.types(), vec!["version"]);
    // A job that had already pinned it still runs.
    let ex = registry
        .runtime()
        .execute(&pinned.code, input("echo", "7"), Arc::new(NoServices))
        .await;
    assert!(matches!(ex.outcome, Outcome::Success(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_strict_and_a_bad_one_keeps_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin("version", dir.path(), "version");
    let registry = PluginRegistry::new(runtime(), dir.path().to_path_buf());
    let mut rx = registry.subscribe();
    registry.load_all().await;
    let _watcher = registry.spawn_watcher().unwrap();
    let toml = dir.path().join("version.toml");
    let plain = registry.for_type("version").unwrap().version.clone();

    write_atomically(&toml, b"colour = \"red\"\n");
    let e = wait_for_event(&mut rx, WAIT, "a failure for an unknown key", |e| {
        matches!(e, PluginEvent::Failed { .. })
    })
    .await;
    let error = failed_error(&e);
    assert!(
        error.contains("version.toml`: unknown key `colour`"),
        "{error}"
    );

    write_atomically(&toml, b"timeout = \"soon\"\n");
    let e = wait_for_event(&mut rx, WAIT, "a failure for a bad duration", |e| {
        matches!(e, PluginEvent::Failed { .. })
    })
    .await;
    assert!(
        failed_error(&e).contains("`timeout` must be a duration such as \"30s\""),
        "{e:?}"
    );

    write_atomically(&toml, b"memory = \"a lot\"\n");
    let e = wait_for_event(&mut rx, WAIT, "a failure for a bad size", |e| {
        matches!(e, PluginEvent::Failed { .. })
    })
    .await;
    assert!(
        failed_error(&e).contains("`memory` must be a size such as \"64MiB\""),
        "{e:?}"
    );
    assert_eq!(version_of(&registry).await, "v1");

    write_atomically(&toml, b"timeout = \"5s\"\n[config]\nversion = \"v3\"\n");
    wait_for_event(
        &mut rx,
        WAIT,
        "the fixed manifest loading",
        is_loaded("version"),
    )
    .await;
    assert_eq!(version_of(&registry).await, "v3");
    let configured = registry.for_type("version").unwrap();
    assert_eq!(configured.manifest.timeout, Some(Duration::from_secs(5)));
    // New settings, same code: a new plugin version (jobs record what they ran with).
    assert_ne!(configured.version, plain);

    // Deleting the manifest reloads with defaults.
    std::fs::remove_file(&toml).unwrap();
    wait_for_event(
        &mut rx,
        WAIT,
        "the reload without a manifest",
        is_loaded("version"),
    )
    .await;
    assert_eq!(version_of(&registry).await, "v1");
    assert_eq!(registry.for_type("version").unwrap().version, plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plugins_cannot_claim_one_type() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        copy_plugin("echo", dir.path(), name);
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            "types = [\"shared\", \"only-NAME\"]\n".replace("NAME", name),
        )
        .unwrap();
    }
    let registry = PluginRegistry::new(runtime(), dir.path().to_path_buf());
    let events = registry.load_all().await;
    assert!(
        matches!(&events[0], PluginEvent::Loaded { name, .. } if name == "a"),
        "{events:?}"
    );
    let error = failed_error(&events[1]);
    assert!(
        error.contains("failed to load plugin `b`")
            && error.contains("b.toml`: job type `shared` is already handled by plugin `a`; remove it from one of the manifests"),
        "{error}"
    );
    assert_eq!(registry.for_type("shared").unwrap().name, "a");
    assert!(registry.for_type("only-b").is_none());

    // Once `a` is gone, `b` gets its turn.
    std::fs::remove_file(dir.path().join("a.wasm")).unwrap();
    let events = registry.reconcile("a").await;
    assert!(
        events.contains(&PluginEvent::Unloaded { name: "a".into() }),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PluginEvent::Loaded { name, .. } if name == "b")),
        "{events:?}"
    );
    assert_eq!(registry.for_type("shared").unwrap().name, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_polling_rescan_finds_changes_without_inotify() {
    let dir = tempfile::tempdir().unwrap();
    let registry = PluginRegistry::new(runtime(), dir.path().to_path_buf());
    assert!(registry.load_all().await.is_empty());
    assert_eq!(registry.rescan().await, 0);
    copy_plugin("echo", dir.path(), "echo");
    assert_eq!(registry.rescan().await, 1);
    assert!(registry.for_type("echo").is_some());
    assert_eq!(registry.rescan().await, 0, "nothing changed");
    std::fs::remove_file(dir.path().join("echo.wasm")).unwrap();
    assert_eq!(registry.rescan().await, 1);
    assert!(registry.for_type("echo").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_missing_folder_is_an_error() {
    let registry = PluginRegistry::new(runtime(), "/nonexistent/spool-plugins".into());
    let e = registry.spawn_watcher().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot watch the plugins folder `/nonexistent/spool-plugins`"),
        "{e}"
    );
}
