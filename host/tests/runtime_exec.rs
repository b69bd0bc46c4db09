//! `spool exec` through the built binary: the result on stdout, logs and follow-ups on
//! stderr, and exactly one error line (no panic, no backtrace) for every way it can fail.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod runtime_support;

use runtime_support::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn spool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spool"))
}

fn exec(args: &[&str], stdin: Option<&str>) -> Output {
    exec_with_cache(
        args,
        stdin,
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("exec-cache"),
    )
}

fn exec_with_cache(args: &[&str], stdin: Option<&str>, cache: &Path) -> Output {
    let mut cmd = Command::new(spool());
    cmd.arg("exec")
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env("SPOOL_CACHE_DIR", cache)
        .env_remove("SPOOL_LOG");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run spool");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The run failed with exactly one line on stderr, and that line is an error.
fn one_error_line(out: &Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked at") || stderr.contains("[stderr]"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("stack backtrace") && !stderr.contains("Stack backtrace"),
        "{stderr}"
    );
    errors[0].to_string()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/runtime_support/fixtures")
        .join(name)
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn echo_prints_the_result_on_stdout() {
    let echo = plugin_path("echo");
    let out = exec(&[arg(&echo), r#"{"hello": "world"}"#], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{\"hello\": \"world\"}\n");

    let out = exec(&[arg(&echo), "-"], Some("[1, 2, 3]"));
    assert_eq!(text(&out.stdout), "[1, 2, 3]\n");

    let out = exec(&[arg(&echo)], None);
    assert_eq!(text(&out.stdout), "{}\n");
}

#[test]
fn manifest_config_logs_and_followups_are_shown() {
    let out = exec(&[arg(&plugin_path("config-echo"))], None);
    assert_eq!(
        text(&out.stdout),
        "{\"answer\":\"42\",\"greeting\":\"hello from config-echo.toml\"}\n"
    );

    let out = exec(
        &[arg(&plugin_path("followup")), r#"{"type": "echo"}"#],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("follow-up job ") && stderr.contains("(type `echo`, priority 5)"),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("followup_id"));
}

#[test]
fn a_missing_file_is_one_line() {
    let line = one_error_line(&exec(&["/nonexistent/nope.wasm"], None), 1);
    assert!(
        line.starts_with(
            "error: failed to load plugin `nope` from `/nonexistent/nope.wasm`: cannot read it"
        ),
        "{line}"
    );
}

#[test]
fn files_that_are_not_plugins_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, "hello").unwrap();
    let line = one_error_line(&exec(&[arg(&junk)], None), 1);
    assert!(line.contains("it is not a WebAssembly file"), "{line}");

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let line = one_error_line(&exec(&[arg(&core)], None), 1);
    assert!(
        line.contains("it is a core WebAssembly module, not a component"),
        "{line}"
    );

    let line = one_error_line(&exec(&[arg(&fixture("other-world.wasm"))], None), 1);
    assert!(
        line.contains("it does not export `spool:plugin/handler@0.2.0` (or `spool:plugin/handler@0.1.0`) (it exports `hello`); rebuild it with spool-sdk 0.2"),
        "{line}"
    );
}

#[test]
fn a_malformed_payload_says_where() {
    let line = one_error_line(&exec(&[arg(&plugin_path("echo")), r#"{"a": 1,}"#], None), 1);
    assert!(
        line.starts_with("error: the payload is not valid JSON: "),
        "{line}"
    );
    assert!(line.contains("line 1 column 9"), "{line}");
}

#[test]
fn job_failures_say_what_happened() {
    let line = one_error_line(
        &exec(
            &[arg(&plugin_path("fail-permanent")), r#"{"msg": "bad"}"#],
            None,
        ),
        2,
    );
    assert!(
        line.starts_with("error: job failed (fail, no retry): "),
        "{line}"
    );

    let line = one_error_line(&exec(&[arg(&plugin_path("always-retry"))], None), 2);
    assert!(line.starts_with("error: job failed (retry): "), "{line}");

    let line = one_error_line(
        &exec(&[arg(&plugin_path("panic")), r#"{"msg": "oh no"}"#], None),
        2,
    );
    assert!(
        line.starts_with("error: job failed (trap): ") && line.contains("fixture panic: oh no"),
        "{line}"
    );

    let line = one_error_line(
        &exec(
            &[arg(&plugin_path("loop-forever")), "--timeout", "300ms"],
            None,
        ),
        2,
    );
    assert_eq!(
        line,
        "error: job failed (timeout): job timed out after 300ms"
    );

    let line = one_error_line(&exec(&[arg(&plugin_path("memory-hog"))], None), 2);
    assert!(
        line.starts_with("error: job failed (out_of_memory): out of memory: the plugin asked for "),
        "{line}"
    );
    assert!(line.ends_with("its limit is 64 MiB"), "{line}");
}

#[test]
fn a_bad_timeout_flag_is_one_line() {
    let line = one_error_line(
        &exec(&[arg(&plugin_path("echo")), "--timeout", "soon"], None),
        1,
    );
    assert!(line.contains("`--timeout` must be a duration"), "{line}");
}

#[test]
fn compiled_plugins_are_cached_between_runs() {
    let cache = tempfile::tempdir().unwrap();
    let echo = plugin_path("echo");
    for _ in 0..2 {
        let out = exec_with_cache(&[arg(&echo), "1"], None, cache.path());
        assert_eq!(text(&out.stdout), "1\n");
    }
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(files.len(), 1, "one .cwasm for one plugin version");

    let off = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(spool());
    let out = cmd
        .args(["exec", arg(&echo), "2"])
        .env("SPOOL_CACHE_DIR", "off")
        .env("HOME", off.path())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "2\n");
    assert_eq!(
        std::fs::read_dir(off.path()).unwrap().count(),
        0,
        "nothing cached with SPOOL_CACHE_DIR=off"
    );
}
