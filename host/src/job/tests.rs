//! Unit tests for the job model's pure rules: transitions, backoff, parsing, validation and
//! the JSON form.

use super::*;

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

fn new_job() -> NewJob {
    NewJob::new("email", raw(r#"{"to":"a@example.com"}"#))
}

#[test]
fn states_round_trip_through_their_names() {
    for state in JobState::ALL {
        assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            format!("\"{state}\"")
        );
    }
    let err = "done".parse::<JobState>().unwrap_err().to_string();
    assert!(err.contains("unknown job status `done`"), "{err}");
}

#[test]
fn lifecycle_allows_only_the_designed_transitions() {
    use JobState::*;
    let allowed = [
        (Scheduled, Pending),
        (Scheduled, Cancelled),
        (Pending, Running),
        (Pending, Cancelled),
        (Running, Completed),
        (Running, Retrying),
        (Running, Failed),
        (Running, Cancelled),
        (Running, Pending),
        (Retrying, Pending),
        (Retrying, Cancelled),
        (Failed, Pending),
        (Cancelled, Pending),
    ];
    for from in JobState::ALL {
        for to in JobState::ALL {
            assert_eq!(
                from.can_transition_to(to),
                allowed.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn finished_states_are_not_live() {
    let finished: Vec<_> = JobState::ALL
        .into_iter()
        .filter(|s| s.is_finished())
        .collect();
    assert_eq!(
        finished,
        [JobState::Completed, JobState::Failed, JobState::Cancelled]
    );
    assert!(
        JobState::ALL
            .into_iter()
            .all(|s| s.is_live() != s.is_finished())
    );
}

#[test]
fn cancel_acts_on_each_state() {
    use JobState::*;
    for state in [Scheduled, Pending, Retrying] {
        assert_eq!(cancel_action(state), CancelAction::CancelNow, "{state}");
    }
    assert_eq!(cancel_action(Running), CancelAction::RequestStop);
    for state in [Completed, Failed, Cancelled] {
        assert_eq!(
            cancel_action(state),
            CancelAction::AlreadyFinished,
            "{state}"
        );
    }
}

#[test]
fn only_failed_and_cancelled_jobs_replay() {
    let mut job = Job::from_new(new_job(), 1_000);
    for state in JobState::ALL {
        job.status = state;
        let replayable = matches!(state, JobState::Failed | JobState::Cancelled);
        assert_eq!(check_replay(&job).is_ok(), replayable, "{state}");
    }
    job.status = JobState::Completed;
    let err = check_replay(&job).unwrap_err().to_string();
    assert!(
        err.contains("is completed: only failed or cancelled"),
        "{err}"
    );
}

#[test]
fn new_job_is_pending_now_or_scheduled_later() {
    assert_eq!(initial_state(None, 100), (JobState::Pending, 100));
    assert_eq!(initial_state(Some(50), 100), (JobState::Pending, 100));
    assert_eq!(initial_state(Some(100), 100), (JobState::Pending, 100));
    assert_eq!(initial_state(Some(101), 100), (JobState::Scheduled, 101));
    let job = Job::from_new(
        NewJob {
            run_at: Some(5_000),
            ..new_job()
        },
        1_000,
    );
    assert_eq!(
        (job.status, job.run_at, job.created_at, job.attempt),
        (JobState::Scheduled, 5_000, 1_000, 0)
    );
}

#[test]
fn failed_attempt_retries_until_the_last_then_fails() {
    assert_eq!(
        state_after_failure(1, 4, false, Some(10)),
        JobState::Retrying
    );
    assert_eq!(
        state_after_failure(3, 4, false, Some(10)),
        JobState::Retrying
    );
    assert_eq!(state_after_failure(4, 4, false, Some(10)), JobState::Failed);
    assert_eq!(state_after_failure(1, 4, false, None), JobState::Failed);
    assert_eq!(
        state_after_failure(1, 4, true, Some(10)),
        JobState::Cancelled
    );
}

#[test]
fn expired_lease_requeues_until_the_last_attempt() {
    assert_eq!(state_after_lease_expiry(1, 2, false), JobState::Pending);
    assert_eq!(state_after_lease_expiry(2, 2, false), JobState::Failed);
    assert_eq!(state_after_lease_expiry(1, 2, true), JobState::Cancelled);
    assert_eq!(state_after_release(false), JobState::Pending);
    assert_eq!(state_after_release(true), JobState::Cancelled);
}

#[test]
fn backoff_ceiling_doubles_up_to_the_cap() {
    let policy = BackoffPolicy {
        base_ms: 1_000,
        cap_ms: 10_000,
        jitter: Jitter::None,
    };
    let ceilings: Vec<u64> = (1..=6)
        .map(|n| policy.ceiling(n).as_millis() as u64)
        .collect();
    assert_eq!(ceilings, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
    assert_eq!(policy.ceiling(0), Duration::from_secs(1));
    assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(10));
    assert_eq!(policy.delay(3, None), Duration::from_secs(4));
}

#[test]
fn full_jitter_spreads_between_zero_and_the_ceiling() {
    let policy = BackoffPolicy {
        base_ms: 1_000,
        cap_ms: 60_000,
        jitter: Jitter::Full,
    };
    assert_eq!(policy.delay_with_draw(3, None, 0.0), Duration::ZERO);
    assert_eq!(policy.delay_with_draw(3, None, 0.5), Duration::from_secs(2));
    assert_eq!(
        policy.delay_with_draw(3, None, 0.999_999),
        Duration::from_secs(4)
    );
    assert_eq!(
        policy.delay_with_draw(30, None, 1.0),
        Duration::from_secs(60)
    );
    assert_eq!(policy.delay_with_draw(3, None, f64::NAN), Duration::ZERO);
    for _ in 0..1000 {
        assert!(policy.delay(4, None) <= Duration::from_secs(8));
    }
}

#[test]
fn decorrelated_jitter_grows_from_the_previous_delay() {
    let policy = BackoffPolicy {
        base_ms: 100,
        cap_ms: 5_000,
        jitter: Jitter::Decorrelated,
    };
    let prev = Some(Duration::from_millis(1_000));
    assert_eq!(
        policy.delay_with_draw(2, prev, 0.0),
        Duration::from_millis(100)
    );
    assert_eq!(
        policy.delay_with_draw(2, prev, 1.0),
        Duration::from_millis(3_000)
    );
    assert_eq!(
        policy.delay_with_draw(2, prev, 0.5),
        Duration::from_millis(1_550)
    );
    // Capped.
    assert_eq!(
        policy.delay_with_draw(9, Some(Duration::from_secs(4)), 1.0),
        Duration::from_secs(5)
    );
    // Unknown previous delay: the previous attempt's ceiling (attempt 3 -> 200 ms) stands in.
    assert_eq!(
        policy.delay_with_draw(3, None, 1.0),
        Duration::from_millis(600)
    );
    assert_eq!(
        policy.delay_with_draw(1, None, 1.0),
        Duration::from_millis(300)
    );
    for _ in 0..1000 {
        let d = policy.delay(5, prev);
        assert!(
            d >= Duration::from_millis(100) && d <= Duration::from_secs(3),
            "{d:?}"
        );
    }
}

#[test]
fn retry_at_adds_the_delay_to_now() {
    let policy = BackoffPolicy::new(Duration::from_secs(2), Duration::from_secs(60))
        .with_jitter(Jitter::None);
    assert_eq!(policy.retry_at(10_000, 2, None), 14_000);
}

#[test]
fn backoff_policy_rejects_a_zero_base_or_a_cap_below_it() {
    assert!(BackoffPolicy::default().validate().is_ok());
    let zero = BackoffPolicy {
        base_ms: 0,
        ..BackoffPolicy::default()
    };
    assert!(
        zero.validate()
            .unwrap_err()
            .to_string()
            .contains("at least 1 ms")
    );
    let inverted = BackoffPolicy {
        base_ms: 10,
        cap_ms: 5,
        jitter: Jitter::Full,
    };
    assert!(
        inverted
            .validate()
            .unwrap_err()
            .to_string()
            .contains("must not be below")
    );
}

#[test]
fn backoff_json_without_jitter_reads_as_full() {
    let policy: BackoffPolicy = serde_json::from_str(r#"{"base_ms":5,"cap_ms":9}"#).unwrap();
    assert_eq!(
        policy,
        BackoffPolicy {
            base_ms: 5,
            cap_ms: 9,
            jitter: Jitter::Full
        }
    );
}

#[test]
fn priority_parses_names_and_numbers() {
    for (text, want) in [
        ("high", 1),
        ("normal", 5),
        ("low", 10),
        (" HIGH ", 1),
        ("1", 1),
        ("10", 10),
        ("7", 7),
    ] {
        assert_eq!(parse_priority(text), Ok(want), "{text}");
    }
    for text in ["0", "11", "-1", "urgent", "", "5.5", "256"] {
        let err = parse_priority(text).unwrap_err().to_string();
        assert!(
            err.contains("use high, normal, low, or a number from 1"),
            "{text}: {err}"
        );
    }
}

#[test]
fn payload_text_must_be_json_within_the_limit() {
    assert_eq!(
        parse_payload(r#" {"a": 1} "#, 100).unwrap().get(),
        r#"{"a": 1}"#
    );
    let err = parse_payload("{oops", 100).unwrap_err();
    assert!(matches!(err, JobError::PayloadNotJson(_)));
    assert!(
        err.to_string().starts_with("payload is not valid JSON"),
        "{err}"
    );
    let big = format!("\"{}\"", "x".repeat(200));
    let err = parse_payload(&big, 100).unwrap_err();
    assert_eq!(
        err,
        JobError::PayloadTooLarge {
            size: 202,
            limit: 100
        }
    );
    assert!(
        err.to_string()
            .contains("202 bytes, over the limit of 100 bytes"),
        "{err}"
    );
}

#[test]
fn new_job_validation_names_the_problem() {
    assert!(new_job().validate(DEFAULT_MAX_PAYLOAD_BYTES).is_ok());
    let cases: Vec<(NewJob, &str)> = vec![
        (
            NewJob {
                priority: 0,
                ..new_job()
            },
            "invalid priority `0`",
        ),
        (
            NewJob {
                priority: 11,
                ..new_job()
            },
            "invalid priority `11`",
        ),
        (
            NewJob {
                max_attempts: 0,
                ..new_job()
            },
            "max_attempts must be at least 1",
        ),
        (
            NewJob {
                job_type: String::new(),
                ..new_job()
            },
            "job type must not be empty",
        ),
        (
            NewJob {
                job_type: "a b".into(),
                ..new_job()
            },
            "invalid job type `a b`",
        ),
        (
            NewJob {
                job_type: "-x".into(),
                ..new_job()
            },
            "invalid job type `-x`",
        ),
        (
            NewJob {
                job_type: "é".into(),
                ..new_job()
            },
            "invalid job type",
        ),
        (
            NewJob {
                job_type: "x".repeat(129),
                ..new_job()
            },
            "129 bytes, over the limit of 128",
        ),
        (
            NewJob {
                unique_key: Some(String::new()),
                ..new_job()
            },
            "unique key must not be empty",
        ),
        (
            NewJob {
                unique_key: Some("k".repeat(513)),
                ..new_job()
            },
            "unique key is 513 bytes",
        ),
        (
            NewJob {
                id: String::new(),
                ..new_job()
            },
            "job id must be 1 to 128 bytes",
        ),
        (
            NewJob {
                id: "a\nb".into(),
                ..new_job()
            },
            "whitespace or control",
        ),
        (
            NewJob {
                timeout_ms: Some(0),
                ..new_job()
            },
            "timeout must be at least 1 ms",
        ),
        (
            NewJob {
                timeout_ms: Some(u64::MAX),
                ..new_job()
            },
            "is too large",
        ),
        (
            NewJob {
                backoff: Some(BackoffPolicy {
                    base_ms: 0,
                    cap_ms: 1,
                    jitter: Jitter::Full,
                }),
                ..new_job()
            },
            "backoff base",
        ),
    ];
    for (job, want) in cases {
        let err = job
            .validate(DEFAULT_MAX_PAYLOAD_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "want `{want}` in `{err}`");
    }
    for ok_type in ["email", "image.resize", "a:b/c-d_e", "9lives"] {
        assert!(validate_job_type(ok_type).is_ok(), "{ok_type}");
    }
    let err = new_job().validate(5).unwrap_err();
    assert_eq!(err, JobError::PayloadTooLarge { size: 22, limit: 5 });
}

#[test]
fn job_json_uses_the_api_field_names_and_rfc3339_times() {
    let mut job = Job::from_new(new_job(), 1_785_585_600_123);
    job.started_at = Some(1_785_585_601_000);
    let value = serde_json::to_value(&job).unwrap();
    for field in [
        "id",
        "type",
        "payload",
        "priority",
        "status",
        "attempt",
        "max_attempts",
        "run_at",
        "created_at",
        "started_at",
        "finished_at",
        "timeout_ms",
        "unique_key",
        "progress",
        "result",
        "error",
        "logs",
        "plugin_version",
    ] {
        assert!(value.get(field).is_some(), "missing `{field}` in {value}");
    }
    assert_eq!(value["created_at"], "2026-08-01T12:00:00.123Z");
    assert_eq!(value["started_at"], "2026-08-01T12:00:01.000Z");
    assert_eq!(value["finished_at"], serde_json::Value::Null);
    assert_eq!(value["status"], "pending");
    assert_eq!(value["payload"]["to"], "a@example.com");
    let back: Job = serde_json::from_value(value).unwrap();
    assert_eq!(
        (back.created_at, back.started_at, back.finished_at),
        (job.created_at, job.started_at, None)
    );
}

#[test]
fn times_parse_from_rfc3339_or_milliseconds() {
    assert_eq!(
        serde_time::parse_time("2026-08-01T12:00:00.123Z"),
        Ok(1_785_585_600_123)
    );
    assert_eq!(
        serde_time::parse_time("2026-08-01T14:00:00.123+02:00"),
        Ok(1_785_585_600_123)
    );
    assert_eq!(
        serde_time::parse_time("1785585600123"),
        Ok(1_785_585_600_123)
    );
    assert_eq!(serde_time::format_rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert!(
        serde_time::parse_time("yesterday")
            .unwrap_err()
            .to_string()
            .contains("RFC 3339")
    );
    let job: Job = serde_json::from_str(
        r#"{"id":"x","type":"t","payload":{},"priority":5,"status":"pending","attempt":0,
            "max_attempts":4,"run_at":5,"created_at":"1970-01-01T00:00:00.007Z","started_at":null,
            "finished_at":null,"timeout_ms":null,"unique_key":null,"progress":null,"result":null,
            "error":null,"logs":[],"plugin_version":null}"#,
    )
    .unwrap();
    assert_eq!(
        (job.run_at, job.created_at, job.lease_expires_at),
        (5, 7, None)
    );
}

#[test]
fn logs_keep_the_last_lines() {
    let logs: Vec<String> = (0..250).map(|i| i.to_string()).collect();
    let kept = trim_logs(logs);
    assert_eq!(kept.len(), MAX_LOG_LINES);
    assert_eq!(kept[0], "50");
    assert_eq!(trim_logs(vec!["a".into()]), ["a"]);
}

#[test]
fn manual_clock_moves_only_when_told() {
    let clock = ManualClock::new();
    let start = clock.now_ms();
    assert_eq!(clock.now_ms(), start);
    clock.advance(Duration::from_secs(2));
    assert_eq!(clock.now_ms(), start + 2_000);
    assert!(clock.skew_ms() > 1_000);
}

fn nested(depth: usize) -> String {
    format!("{}0{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn payloads_nested_deeper_than_the_limit_are_refused() {
    assert!(parse_payload(&nested(MAX_JSON_DEPTH), 1 << 20).is_ok());
    for depth in [MAX_JSON_DEPTH + 1, 200_000] {
        let e = parse_payload(&nested(depth), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("nested more than 64 levels"), "{e}");
    }
    // Brackets inside strings do not count; escaped quotes do not end a string.
    let text = format!(r#"{{"a": "{}\"[[", "b": [1]}}"#, "[".repeat(500));
    assert!(check_json_depth("payload", &text).is_ok());
    let mut new = NewJob::new("t", RawValue::from_string(nested(65)).unwrap());
    assert!(matches!(
        new.validate(1 << 20),
        Err(JobError::TooDeep { .. })
    ));
    new.payload = RawValue::from_string(nested(3)).unwrap();
    assert!(new.validate(1 << 20).is_ok());
}

#[test]
fn times_outside_year_1_to_9999_are_refused_before_storage() {
    let mut new = NewJob::new("t", RawValue::from_string("{}".into()).unwrap());
    for at in [i64::MAX, MAX_TIME_MS + 1, MIN_TIME_MS - 1, i64::MIN] {
        new.run_at = Some(at);
        let e = new.validate(1 << 20).unwrap_err();
        assert!(e.to_string().contains("year 9999"), "{e}");
    }
    new.run_at = Some(MAX_TIME_MS);
    assert!(new.validate(1 << 20).is_ok());
    assert_eq!(clamp_time(i64::MAX), MAX_TIME_MS);
}

#[test]
fn max_attempts_over_the_limit_is_refused() {
    let mut new = NewJob::new("t", RawValue::from_string("{}".into()).unwrap());
    new.max_attempts = MAX_ATTEMPTS + 1;
    assert!(new.validate(1 << 20).is_err());
    new.max_attempts = MAX_ATTEMPTS;
    assert!(new.validate(1 << 20).is_ok());
}

#[test]
fn long_errors_are_cut_and_say_so() {
    assert_eq!(truncate_text("short".into(), 100), "short");
    let cut = truncate_text("é".repeat(20_000), MAX_ERROR_BYTES);
    assert!(cut.len() <= MAX_ERROR_BYTES, "{}", cut.len());
    assert!(cut.ends_with("(truncated, 40000 bytes in all)"), "{cut}");
}
