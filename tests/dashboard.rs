//! The web dashboard in a real headless Chromium against a real daemon: the overview counts
//! jobs submitted through the CLI; a job submitted while the page is open shows without a
//! reload; a failed job's page shows its error and log lines and its retry button runs it
//! again; "retry every failed job of type T" retries exactly those; with a token set, the page
//! shows no job data until it is given the token; the overview's button pauses and resumes a
//! type, and it lists cron schedules. Each test saves screenshots into
//! target/dashboard-screenshots/ and fails if the page logged a JavaScript error.
//!
//! Needs `chromium` and `chromium-driver` (scripts/setup.sh; a loud skip without them, a
//! failure under `CI=true`), the dev binary and the plugin fixtures.
//! Run: `cargo test -p spool-tests --test dashboard`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::browser::{Browser, WAIT};
use spool_tests::{Daemon, eventually_blocking, id_of, stderr, stdout};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A failed flaky job: it logs a line and fails its only attempt.
fn failing_flaky() -> Value {
    json!({"type": "flaky", "payload": {"fail_times": 5}, "max_attempts": 1})
}

/// The `finished_at` of a job (its last attempt's end).
fn finished_at(d: &Daemon, id: &str) -> String {
    d.job(id)["finished_at"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn count_cell(b: &Browser, job_type: &str, state: &str) -> Option<u64> {
    b.exec(
        "const c = document.querySelector(`#types-table tr[data-type=\"${arguments[0]}\"] \
         td[data-state=\"${arguments[1]}\"]`); return c ? Number(c.dataset.count) : null;",
        &[json!(job_type), json!(state)],
    )
    .as_u64()
}

#[test]
fn overview_shows_counts_of_jobs_submitted_through_the_cli() {
    let Some(mut b) = Browser::start(1280, 900) else {
        return;
    };
    let d = Daemon::start(&["echo", "flaky", "fail-permanent"]);
    for i in 0..3 {
        let out = d.cli(&["submit", "echo", &format!("{{\"n\": {i}}}"), "--wait"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    let out = d.cli(&["submit", "fail-permanent", "{}", "--wait"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = d.cli(&["submit", "echo", "{}", "--delay", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let flaky = d.submit(&json!({"type": "flaky", "payload": {"fail_times": 1}}));
    d.wait_status(&id_of(&flaky), "completed", LONG);
    b.goto(&format!("{}/", d.url));
    b.wait_for("echo completed = 3", WAIT, |b| {
        (count_cell(b, "echo", "completed") == Some(3)).then_some(())
    });
    assert_eq!(count_cell(&b, "echo", "scheduled"), Some(1));
    assert_eq!(count_cell(&b, "fail-permanent", "failed"), Some(1));
    assert_eq!(count_cell(&b, "flaky", "completed"), Some(1));
    let handled = b.text("#types-table tr[data-type=\"echo\"] td[data-handled]");
    assert_eq!(handled.as_deref(), Some("loaded"));
    // Run time of the recent attempts: mean and 95th percentile.
    let p95 = b.exec(
        "const c = document.querySelector('#types-table tr[data-type=\"echo\"] td[data-p95]'); \
         return c ? Number(c.dataset.p95) : null;",
        &[],
    );
    assert!(
        p95.as_f64().is_some_and(|ms| ms > 0.0),
        "p95 of echo: {p95}"
    );
    let health = b.wait_text("#health");
    assert!(
        health.contains("healthy") && health.contains("sqlite"),
        "{health}"
    );
    // The chart counted this daemon's attempts: 3 echo + 1 flaky completed, 1 failed, and
    // the flaky job's first attempt retried.
    let chart = b.wait_text("#throughput .legend");
    assert!(chart.contains("completed 4"), "{chart}");
    assert!(
        chart.contains("failed 1") && chart.contains("retried 1"),
        "{chart}"
    );
    b.screenshot("overview-1280");
    // The plugins page lists each loaded plugin with its version and types, and a file that
    // failed to load with its error.
    std::fs::write(d.plugins.join("broken.wasm"), b"not a component").expect("write");
    eventually_blocking("broken.wasm to be reported", LONG, || {
        d.get("/api/v1/plugins").text.contains("broken")
    });
    b.goto(&format!("{}/#/plugins", d.url));
    let row = b.wait_text("#plugins-table tr[data-plugin=\"flaky\"]");
    assert!(row.contains("flaky") && row.contains("loaded"), "{row}");
    // The test daemons share a compiled-plugin cache: the code came from it, or was compiled
    // and put there by this daemon.
    let compile = b
        .text("#plugins-table tr[data-plugin=\"flaky\"] td[data-compile]")
        .unwrap_or_default();
    assert!(
        (compile.contains("from the cache") || compile.contains("now cached"))
            && compile.ends_with(" ms"),
        "{compile}"
    );
    let failed = b.wait_text("#plugins-failed");
    assert!(
        failed.contains("broken") && failed.contains("failed to load"),
        "{failed}"
    );
    b.screenshot("plugins");
    b.goto(&format!("{}/#/", d.url));
    b.wait_text("#types-table");
    // Narrow: the table scrolls inside its box, the page itself does not.
    b.resize(390, 844);
    let wide = b.exec(
        "return document.documentElement.scrollWidth > window.innerWidth + 1;",
        &[],
    );
    assert_eq!(wide, json!(false), "the page is wider than a 390 px screen");
    b.screenshot("overview-390");
    b.assert_no_js_errors(&[]);
}

#[test]
fn a_job_submitted_while_the_page_is_open_appears_without_a_reload() {
    let Some(mut b) = Browser::start(1280, 900) else {
        return;
    };
    let d = Daemon::start(&["echo"]);
    b.goto(&format!("{}/#/jobs", d.url));
    b.wait_text("#no-jobs");
    // A marker that a reload would wipe.
    b.exec("window.notReloaded = true;", &[]);
    let job = d.submit(&json!({"type": "echo", "payload": {"live": true}}));
    let id = id_of(&job);
    let row = format!("#jobs-table tr[data-id=\"{id}\"]");
    b.wait_for("the new job's row", WAIT, |b| b.text(&row));
    b.wait_for("the row to say completed", WAIT, |b| {
        b.text(&format!("{row} [data-status=\"completed\"]"))
    });
    // The overview updates live too.
    b.goto(&format!("{}/#/", d.url));
    b.wait_for("echo completed = 1", WAIT, |b| {
        (count_cell(b, "echo", "completed") == Some(1)).then_some(())
    });
    b.exec("window.notReloaded = true;", &[]);
    let out = d.cli(&["submit", "echo", "{}", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    b.wait_for("echo completed = 2 on the open overview", WAIT, |b| {
        (count_cell(b, "echo", "completed") == Some(2)).then_some(())
    });
    assert_eq!(
        b.exec("return window.notReloaded === true;", &[]),
        json!(true)
    );
    b.screenshot("live-overview");
    // Paging by cursor: 60 jobs of a type no plugin handles stay pending, 50 a page.
    let ids = d.submit_batch(&vec![json!({"type": "nobody"}); 60]);
    b.goto(&format!("{}/#/jobs?type=nobody", d.url));
    let rows = |n: u64| {
        move |b: &Browser| {
            let got = b.exec(
                "return document.querySelectorAll('#jobs-table tbody tr').length;",
                &[],
            );
            (got.as_u64() == Some(n)).then_some(())
        }
    };
    b.wait_for("a first page of 50", WAIT, rows(50));
    b.click("#page-older");
    b.wait_for("a second page of 10", WAIT, rows(10));
    // The oldest job is last on the last page (newest first).
    let last = b
        .text("#jobs-table tbody tr:last-child")
        .unwrap_or_default();
    assert!(last.contains(&ids[0]), "{last}");
    b.click("#page-newer");
    b.wait_for("the first page again", WAIT, rows(50));
    // Open a job by its id.
    b.type_into("#open-id", &ids[7]);
    b.click("#opener button[type=submit]");
    let facts = b.wait_text("#job-facts");
    assert!(
        facts.contains("no loaded plugin handles this type"),
        "{facts}"
    );
    b.assert_no_js_errors(&[]);
}

#[test]
fn a_failed_jobs_page_shows_error_and_logs_and_retry_runs_it_again() {
    let Some(mut b) = Browser::start(1280, 900) else {
        return;
    };
    let d = Daemon::start(&["flaky"]);
    let id = id_of(&d.submit(&failing_flaky()));
    d.wait_status(&id, "failed", LONG);
    let before = finished_at(&d, &id);
    b.goto(&format!("{}/#/job/{id}", d.url));
    let error = b.wait_text("#job-error");
    assert!(
        error.contains("flaky: attempt 1 of 5 planned failures"),
        "{error}"
    );
    let logs = b.wait_text("#job-logs");
    assert!(logs.contains("attempt 1 fails on purpose"), "{logs}");
    b.wait_for("the timeline's job.failed", WAIT, |b| {
        b.text("#job-timeline li[data-kind=\"job.failed\"]")
    });
    b.screenshot("job-failed");
    b.click("#job-retry");
    // It runs again (and fails again: the fixture fails every first attempt).
    d.wait_job(&id, LONG, |j| {
        j["status"] == "failed" && j["finished_at"].as_str().unwrap_or_default() > before.as_str()
    });
    b.wait_for("a second job.started on the open page", WAIT, |b| {
        let n = b.exec(
            "return document.querySelectorAll('#job-timeline li[data-kind=\"job.started\"]').length;",
            &[],
        );
        (n.as_u64() == Some(2)).then_some(())
    });
    b.wait_for("the page to show failed again", WAIT, |b| {
        b.text("#job-status[data-status=\"failed\"]")
    });
    b.screenshot("job-retried");
    b.assert_no_js_errors(&[]);
}

#[test]
fn retry_every_failed_job_of_a_type_retries_exactly_those() {
    let Some(mut b) = Browser::start(1280, 900) else {
        return;
    };
    let d = Daemon::start(&["flaky", "fail-permanent", "echo"]);
    let targets: Vec<String> = (0..3)
        .map(|_| id_of(&d.submit(&json!({"type": "fail-permanent"}))))
        .collect();
    let others: Vec<String> = (0..2).map(|_| id_of(&d.submit(&failing_flaky()))).collect();
    let done = id_of(&d.submit(&json!({"type": "echo"})));
    for id in targets.iter().chain(&others) {
        d.wait_status(id, "failed", LONG);
    }
    d.wait_status(&done, "completed", LONG);
    let before: Vec<String> = targets
        .iter()
        .chain(&others)
        .chain([&done])
        .map(|id| finished_at(&d, id))
        .collect();
    b.goto(&format!(
        "{}/#/jobs?status=failed&type=fail-permanent",
        d.url
    ));
    b.wait_text("#jobs-table tbody tr");
    b.click("#bulk-failed-retry");
    let question = b.wait_for("the confirmation", WAIT, |b| {
        b.exec(
            "const d = document.getElementById('confirm'); return d.open ? d.innerText : null;",
            &[],
        )
        .as_str()
        .map(str::to_string)
    });
    assert!(question.contains("Retry 3 jobs"), "{question}");
    b.screenshot("bulk-confirm");
    b.click("#confirm-ok");
    b.wait_for("the done message", WAIT, |b| {
        b.text("#toast").filter(|t| t.contains("3 job(s) done"))
    });
    for (id, old) in targets.iter().zip(&before) {
        d.wait_job(id, LONG, |j| {
            j["status"] == "failed" && j["finished_at"].as_str().unwrap_or_default() > old.as_str()
        });
    }
    // Each target ran again; the other failed jobs and the completed one did not.
    for (i, id) in targets.iter().enumerate() {
        assert_ne!(finished_at(&d, id), before[i], "job {id} was not retried");
    }
    for (i, id) in others.iter().chain([&done]).enumerate() {
        let j = d.job(id);
        assert_eq!(finished_at(&d, id), before[targets.len() + i], "{j}");
        assert_eq!(j["attempt"], 1, "{j}");
    }
    b.screenshot("bulk-done");
    b.assert_no_js_errors(&[]);
}

#[test]
fn without_the_token_the_page_shows_no_job_data() {
    let Some(mut b) = Browser::start(1280, 900) else {
        return;
    };
    let d = Daemon::builder(&["echo"])
        .env("SPOOL_API_TOKEN", "dash-secret-token")
        .start();
    let id = id_of(&d.submit(&json!({"type": "echo", "payload": {"marker": "PAYLOAD-MARKER-41"}})));
    d.wait_status(&id, "completed", LONG);
    for page in ["#/", "#/jobs", &format!("#/job/{id}"), "#/plugins"] {
        b.goto(&format!("{}/{page}", d.url));
        b.wait_text("#token-form");
        let text = b.page_text();
        for secret in ["PAYLOAD-MARKER-41", "echo", &id] {
            assert!(
                !text.contains(secret),
                "{page} shows `{secret}` without a token:\n{text}"
            );
        }
    }
    b.screenshot("token-asked");
    // A wrong token is refused and asked again.
    b.type_into("#token-input", "wrong");
    b.click("#token-form button[type=submit]");
    b.wait_for("the refusal", WAIT, |b| {
        b.text("#token-help").filter(|t| t.contains("refused"))
    });
    assert!(!b.page_text().contains("PAYLOAD-MARKER-41"));
    // The right one opens the job (the same hash: #/plugins was the last page; go to the job).
    b.goto(&format!("{}/#/job/{id}", d.url));
    b.type_into("#token-input", "dash-secret-token");
    b.click("#token-form button[type=submit]");
    let payload = b.wait_text("#job-payload");
    assert!(payload.contains("PAYLOAD-MARKER-41"), "{payload}");
    b.screenshot("token-given");
    // The refused API calls show in the console as failed loads (401): expected here.
    b.assert_no_js_errors(&["status of 401"]);
}

#[test]
fn the_overview_pauses_and_resumes_a_type_and_lists_schedules() {
    let Some(mut b) = Browser::start(1280, 900) else {
        return;
    };
    let d = Daemon::start(&["echo"]);
    let out = d.cli(&["submit", "echo", "{}", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli(&["limits", "set", "echo", "--rate", "100/1m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli(&[
        "schedules",
        "add",
        "hourly-echo",
        "--cron",
        "0 * * * *",
        "--type",
        "echo",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    b.goto(&format!("{}/", d.url));
    let cell = b.wait_text("#types-table tr[data-type=\"echo\"] td[data-flow]");
    assert!(cell.contains("rate 100/1m"), "{cell}");
    b.click("#types-table tr[data-type=\"echo\"] td[data-flow] button");
    eventually_blocking("echo to be paused", LONG, || {
        d.get("/api/v1/types").body["types"]["echo"]["paused"] == true
    });
    b.wait_for("the paused banner", WAIT, |b| b.text("#paused-types"));
    b.screenshot("overview-paused");
    // Paused: a job submitted now waits.
    let job = d.submit(&json!({"type": "echo", "payload": {}}));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.job(&id_of(&job))["status"], "pending");
    b.wait_for("the resume button", WAIT, |b| {
        b.text("#types-table tr[data-type=\"echo\"] td[data-flow=\"paused\"] button")
            .filter(|t| t == "Resume")
    });
    b.click("#types-table tr[data-type=\"echo\"] td[data-flow] button");
    d.wait_status(&id_of(&job), "completed", LONG);
    let row = b.wait_text("#schedules-table tr[data-schedule=\"hourly-echo\"]");
    assert!(
        row.contains("0 * * * * (UTC)") && row.contains("active"),
        "{row}"
    );
    b.assert_no_js_errors(&[]);
}
