//! End to end: plugins in JavaScript, Python and C beside Rust.
//!
//! - The example plugins `js-mdstats`, `py-mdstats` and `c-mdstats` (built from source by
//!   scripts/build-plugins.sh into target/plugins) are dropped into a running daemon's plugins
//!   folder and run jobs: their word counts and headings must equal the Rust `markdown`
//!   plugin's on the same documents, repeats come from the cache, bad payloads fail for good.
//!   A restart then loads the big components from the compiled-plugin cache.
//! - `spool new NAME --lang rust|js|python|c` makes a project in a temporary folder; its one
//!   documented build command (`./build.sh`) makes NAME.wasm, which a running daemon loads and
//!   runs jobs with.
//! - The JavaScript example's own `node --test` suite (its rules and cache-key hash).
//!
//! JavaScript and Python components carry their interpreter (12-18 MB) and take 10-20 s of CPU
//! to compile, so every daemon here shares one compile cache, target/spool-test-cache
//! (`SPOOL_CACHE_DIR`): only the first run on a machine compiles them.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::{
    Daemon, eventually_blocking, id_of, install_plugins, repo_root, spool_bin, stderr, stdout,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Generous: a cold compile of a JS or Python component on a loaded 2-core machine.
const COMPILE: Duration = Duration::from_secs(300);
const JOB: Duration = Duration::from_secs(60);

const LANGUAGE_EXAMPLES: [&str; 3] = ["js-mdstats", "py-mdstats", "c-mdstats"];

/// Documents inside the subset of Markdown the examples cover (see plugins/*-mdstats).
const DOCUMENTS: [&str; 5] = [
    "# Title\n\nSome *emph*asis and `code`.\n\n```\nnot counted\n```\n",
    "# Intro\n## Intro\n## Custom {#mine}\n### Q&A: why?\n",
    "Intro paragraph with **bold**, _italic_, ~~struck~~ and a [link](https://example.com/x) \
     plus ![an image](i.png).\n\n- item one\n- [x] done task\n1. first\n2) second\n\n\
     > quoted *text*\n> more\n\n---\n\n## Closing hashes ##\n\n~~~python\ndef f(): pass\n~~~\n\n\
     snake_case words and 2 * 3 = 6\n",
    "# Ünïcode Café\n\nDéjà vu — naïve résumé.\n\n## Deep  **bold** heading\n",
    "#NotAHeading\n\n####### seven\n\n#\n\n# a `code` heading #\n\n\\*escaped\\* stars\r\nend\n",
];

fn cache_dir() -> PathBuf {
    let dir = repo_root().join("target").join("spool-test-cache");
    std::fs::create_dir_all(&dir).expect("create the shared compile cache folder");
    dir
}

fn daemon_with(plugins: &[&str]) -> Daemon {
    Daemon::builder(plugins)
        .env("SPOOL_CACHE_DIR", &cache_dir().display().to_string())
        .start()
}

/// The JavaScript example's Markdown rules and cache-key hash, checked by its own `node --test`
/// suite (plain JavaScript, no component): the hash against its BigInt definition.
#[test]
fn the_javascript_example_passes_its_node_tests() {
    let dir = repo_root().join("plugins").join("js-mdstats");
    let out = Command::new("node")
        .args(["--test", "test/"])
        .current_dir(&dir)
        .output()
        .expect("run node (scripts/build-plugins.sh installs it)");
    assert!(
        out.status.success(),
        "node --test in {}:\n{}{}",
        dir.display(),
        stdout(&out),
        stderr(&out)
    );
}

/// Poll `/api/v1/plugins` until every name in `names` is loaded.
fn wait_loaded(d: &Daemon, names: &[&str], limit: Duration) {
    eventually_blocking(&format!("plugins {names:?} to load"), limit, || {
        let list = d.get("/api/v1/plugins").body;
        let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
        if let Some(failed) = plugins.iter().find(|p| p["state"] == "failed") {
            panic!("a plugin failed to load: {failed}\n{}", d.logs());
        }
        names.iter().all(|n| {
            plugins
                .iter()
                .any(|p| p["name"] == *n && p["state"] == "loaded")
        })
    });
}

fn run_job(d: &Daemon, job_type: &str, payload: Value) -> Value {
    let id = id_of(&d.submit(&json!({"type": job_type, "payload": payload})));
    d.wait_job(&id, JOB, |j| {
        matches!(j["status"].as_str(), Some("completed" | "failed"))
    })
}

fn completed_result(d: &Daemon, job_type: &str, payload: Value) -> Value {
    let job = run_job(d, job_type, payload);
    assert_eq!(
        job["status"],
        "completed",
        "{job_type}: {job}\n{}",
        d.logs()
    );
    job["result"].clone()
}

#[test]
fn example_plugins_in_js_python_and_c_agree_with_rust_and_start_from_the_cache() {
    let mut d = daemon_with(&["markdown"]);
    // Dropped into the running daemon's folder: the watcher compiles and loads them.
    let started = Instant::now();
    install_plugins(&d.plugins, &LANGUAGE_EXAMPLES);
    wait_loaded(&d, &LANGUAGE_EXAMPLES, COMPILE);
    eprintln!(
        "languages: js/py/c examples loaded into a running daemon in {:.1?}",
        started.elapsed()
    );

    for (n, doc) in DOCUMENTS.iter().enumerate() {
        let rust = completed_result(&d, "markdown", json!({ "markdown": doc }));
        for plugin in LANGUAGE_EXAMPLES {
            let got = completed_result(&d, plugin, json!({ "markdown": doc }));
            assert_eq!(got["words"], rust["words"], "{plugin}, document {n}: {got}");
            assert_eq!(
                got["headings"], rust["headings"],
                "{plugin}, document {n}: {got}"
            );
            assert_eq!(got["cached"], false, "{plugin}, document {n}");
        }
    }

    for plugin in LANGUAGE_EXAMPLES {
        // A repeat is served from the plugin's cache (the daemon's storage).
        let job = run_job(&d, plugin, json!({ "markdown": DOCUMENTS[0] }));
        assert_eq!(job["status"], "completed", "{job}");
        assert_eq!(job["result"]["cached"], true, "{plugin}: {job}");
        assert_eq!(job["result"]["words"], 5, "{plugin}: {job}");
        assert_eq!(job["progress"]["percent"], 100, "{plugin}: {job}");
        let logs = job["logs"].to_string();
        assert!(logs.contains("cache hit"), "{plugin} logs: {logs}");

        // A payload without `markdown` fails at once, with the plugin's own message.
        let job = run_job(&d, plugin, json!({ "text": "no markdown here" }));
        assert_eq!(job["status"], "failed", "{plugin}: {job}");
        assert_eq!(
            job["attempt"], 1,
            "{plugin}: a bad payload is not retried: {job}"
        );
        let error = job["error"].as_str().unwrap_or_default();
        assert!(error.contains("`markdown` string"), "{plugin}: {error}");
    }

    // A restart finds the compiled components in the cache: no 10-20 s compile per plugin.
    d.terminate(Duration::from_secs(30));
    let started = Instant::now();
    d.restart();
    wait_loaded(
        &d,
        &["markdown", "js-mdstats", "py-mdstats", "c-mdstats"],
        COMPILE,
    );
    let restart = started.elapsed();
    eprintln!("languages: restart with js/py/c/rust plugins from the compile cache: {restart:.1?}");
    assert!(
        restart < Duration::from_secs(20),
        "a restart took {restart:?}: the compiled plugins did not come from the cache\n{}",
        d.logs()
    );
    let again = completed_result(&d, "py-mdstats", json!({ "markdown": DOCUMENTS[1] }));
    assert_eq!(
        again["cached"], true,
        "the cache survives a restart on SQLite: {again}"
    );
}

/// `./build.sh` in a new project; panics with its output when it fails.
fn build_project(dir: &Path, env: &[(&str, String)]) -> Duration {
    let started = Instant::now();
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "10", "./build.sh"]).current_dir(dir);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run ./build.sh");
    assert!(
        out.status.success(),
        "./build.sh failed in {}:\n{}\n{}",
        dir.display(),
        stdout(&out),
        stderr(&out)
    );
    started.elapsed()
}

#[test]
fn spool_new_projects_in_every_language_build_with_one_command_and_run_jobs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = daemon_with(&[]);
    // The Rust project reuses the example plugins' build folder, where spool-sdk and its
    // dependencies are already compiled with the same profile (else ~1 min on 2 cores).
    let rust_target = repo_root().join("plugins").join("target");
    let langs = [
        ("rust", "hello-rust"),
        ("js", "hello-js"),
        ("python", "hello-py"),
        ("c", "hello-c"),
    ];

    for (lang, name) in langs {
        let dir = tmp.path().join(name);
        let out = Command::new(spool_bin())
            .args(["new", name, "--lang", lang, "--dir"])
            .arg(&dir)
            .output()
            .expect("run spool new");
        assert!(out.status.success(), "spool new {lang}: {}", stderr(&out));
        assert!(stdout(&out).contains("./build.sh"), "{}", stdout(&out));
        assert!(dir.join("README.md").is_file() && dir.join(format!("{name}.toml")).is_file());

        let env: Vec<(&str, String)> = match lang {
            "rust" => vec![("CARGO_TARGET_DIR", rust_target.display().to_string())],
            // The packages are in npm's cache since scripts/build-plugins.sh installed them.
            "js" => vec![("npm_config_prefer_offline", "true".to_string())],
            _ => Vec::new(),
        };
        let took = build_project(&dir, &env);
        let wasm = dir.join(format!("{name}.wasm"));
        let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "languages: `spool new --lang {lang}` built {name}.wasm ({size} bytes) in {took:.1?}"
        );

        // Deploy as the README says: copy NAME.wasm and NAME.toml into the plugins folder.
        let tmp_copy = d.plugins.join(format!(".{name}.wasm.tmp"));
        std::fs::copy(&wasm, &tmp_copy).expect("copy the component");
        std::fs::copy(
            dir.join(format!("{name}.toml")),
            d.plugins.join(format!("{name}.toml")),
        )
        .expect("copy the manifest");
        std::fs::rename(&tmp_copy, d.plugins.join(format!("{name}.wasm"))).expect("deploy");

        // A second project of the same name is refused, and the first is left alone.
        let again = Command::new(spool_bin())
            .args(["new", name, "--lang", lang, "--dir"])
            .arg(&dir)
            .output()
            .expect("run spool new again");
        assert!(
            !again.status.success(),
            "spool new overwrote {}",
            dir.display()
        );
        assert!(
            stderr(&again).contains("already exists"),
            "{}",
            stderr(&again)
        );
        assert!(wasm.is_file());
    }

    let names: Vec<&str> = langs.iter().map(|(_, n)| *n).collect();
    wait_loaded(&d, &names, COMPILE);
    for name in names {
        let first = completed_result(&d, name, json!({"name": "ada"}));
        assert_eq!(
            first,
            json!({"greeting": "hello, ada", "times_greeted": 1}),
            "{name}"
        );
        let second = completed_result(&d, name, json!({"name": "ada"}));
        assert_eq!(
            second["times_greeted"], 2,
            "{name}: the cache counts: {second}"
        );
        let job = run_job(&d, name, json!({"nom": "ada"}));
        assert_eq!(job["status"], "failed", "{name}: {job}");
        assert_eq!(
            job["attempt"], 1,
            "{name}: a bad payload is not retried: {job}"
        );
        let error = job["error"].as_str().unwrap_or_default();
        assert!(error.contains("`name`"), "{name}: {error}");
    }
}

#[test]
fn spool_new_refuses_bad_names() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for (name, lang) in [("Bad_Name", "js"), ("-x", "c"), ("test", "rust")] {
        let out = Command::new(spool_bin())
            .args(["new", name, "--lang", lang, "--dir"])
            .arg(tmp.path().join("p"))
            .output()
            .expect("run spool new");
        assert!(!out.status.success(), "spool new accepted {name:?}");
        assert!(
            !tmp.path().join("p").exists(),
            "spool new {name:?} left files behind"
        );
    }
}
