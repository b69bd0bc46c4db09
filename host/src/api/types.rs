//! The API's JSON shapes: parsing a submit request into a `NewJob` (with an error that names
//! the field at fault), and the job answer (`JobView`: the stored job plus whether a loaded
//! plugin handles its type). Parsing goes field by field over borrowed raw JSON so that a
//! wrong type says which field, and the payload keeps its exact text.

use crate::job::{self, BackoffPolicy, Jitter, Job, Millis, NewJob};
use crate::units::parse_duration;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest number of jobs in one `POST /api/v1/jobs/batch`.
pub const MAX_BATCH: usize = 10_000;

/// Why a request body was refused: `code` is the API error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub code: &'static str,
    pub message: String,
}

impl BadRequest {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: "invalid_request",
            message: message.into(),
        }
    }
}

/// What a submit needs besides the body: limits and defaults of this daemon.
#[derive(Clone, Copy)]
pub struct SubmitDefaults<'a> {
    pub max_payload: usize,
    /// Attempts when neither the request nor the type's plugin says.
    pub max_attempts: u32,
    /// The `max_attempts` of the plugin handling a type, when its manifest sets one.
    pub plugin_attempts: &'a (dyn Fn(&str) -> Option<u32> + Sync),
    /// The daemon's `job_timeout`: the ceiling of a job's `timeout` when no loaded plugin's
    /// manifest sets one for its type.
    pub job_timeout: std::time::Duration,
    /// The manifest `timeout` of the plugin handling a type, when it sets one.
    pub plugin_timeout: &'a (dyn Fn(&str) -> Option<std::time::Duration> + Sync),
    pub now: Millis,
}

/// One job as sent: every field borrowed raw, parsed one by one below.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubmit<'a> {
    #[serde(rename = "type", borrow)]
    job_type: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    #[serde(borrow)]
    priority: Option<&'a RawValue>,
    #[serde(borrow)]
    delay: Option<&'a RawValue>,
    #[serde(borrow)]
    run_at: Option<&'a RawValue>,
    #[serde(borrow)]
    max_attempts: Option<&'a RawValue>,
    #[serde(borrow)]
    unique_key: Option<&'a RawValue>,
    #[serde(borrow)]
    timeout: Option<&'a RawValue>,
    #[serde(borrow)]
    backoff: Option<&'a RawValue>,
    #[serde(borrow)]
    unique_for: Option<&'a RawValue>,
    #[serde(borrow)]
    debounce: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    base: String,
    cap: Option<String>,
    jitter: Option<Jitter>,
}

/// `{"jobs": [...]}`. (A bare array is read directly: serde's untagged enums buffer their
/// input, which cannot hold borrowed raw values.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch<'a> {
    #[serde(borrow)]
    jobs: Vec<&'a RawValue>,
}

/// Parse the body of `POST /api/v1/jobs`.
pub fn parse_submit(body: &[u8], d: SubmitDefaults<'_>) -> Result<NewJob, BadRequest> {
    let text = body_text(body)?;
    let raw: &RawValue = serde_json::from_str(text).map_err(malformed)?;
    submit_from_raw(raw, d, At(None))
}

/// Parse the body of `POST /api/v1/jobs/batch`: `{"jobs": [...]}` or a bare array.
pub fn parse_batch(body: &[u8], d: SubmitDefaults<'_>) -> Result<Vec<NewJob>, BadRequest> {
    let text = body_text(body)?;
    let _: &RawValue = serde_json::from_str(text).map_err(malformed)?;
    let shape =
        || BadRequest::invalid("a batch must be {\"jobs\": [job, ...]} or a JSON array of jobs");
    let jobs: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|_| shape())?
    } else {
        serde_json::from_str::<RawBatch>(text)
            .map_err(|_| shape())?
            .jobs
    };
    if jobs.is_empty() {
        return Err(BadRequest::invalid(
            "the batch is empty: send at least one job",
        ));
    }
    if jobs.len() > MAX_BATCH {
        return Err(BadRequest::invalid(format!(
            "the batch has {} jobs, over the limit of {MAX_BATCH}: split it",
            jobs.len()
        )));
    }
    jobs.iter()
        .enumerate()
        .map(|(i, raw)| submit_from_raw(raw, d, At(Some(i))))
        .collect()
}

fn body_text(body: &[u8]) -> Result<&str, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadRequest {
            code: "bad_json",
            message: "the request body is empty: send a JSON object".into(),
        });
    }
    std::str::from_utf8(body).map_err(|e| BadRequest {
        code: "bad_json",
        message: format!("the request body is not UTF-8: {e}"),
    })
}

fn malformed(e: serde_json::Error) -> BadRequest {
    BadRequest {
        code: "bad_json",
        message: format!("malformed JSON in the request body: {e}"),
    }
}

/// Where a job sits in a batch, for its error messages (`jobs[3]: `); nothing for a single
/// submit. Formatted only when a message is made, not for every job of a batch.
#[derive(Clone, Copy)]
struct At(Option<usize>);

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(i) => write!(f, "jobs[{i}]: "),
            None => Ok(()),
        }
    }
}

fn submit_from_raw(raw: &RawValue, d: SubmitDefaults<'_>, at: At) -> Result<NewJob, BadRequest> {
    if !raw.get().trim_start().starts_with('{') {
        return Err(BadRequest::invalid(format!(
            "{at}a job must be a JSON object such as {{\"type\": \"echo\", \"payload\": {{}}}}"
        )));
    }
    let r: RawSubmit = serde_json::from_str(raw.get()).map_err(|e| {
        // Only unknown fields can fail here: every known field is taken raw.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        BadRequest::invalid(format!("{at}{msg}"))
    })?;
    let bad = |m: String| BadRequest::invalid(format!("{at}{m}"));
    let job_type: String = match present(r.job_type) {
        None => return Err(bad("`type` is required: the job type, e.g. \"echo\"".into())),
        Some(v) => string_field("type", v).map_err(bad)?,
    };
    job::validate_job_type(&job_type).map_err(|e| bad(e.to_string()))?;
    let payload: Box<RawValue> = match r.payload {
        None => RawValue::from_string("{}".into()).map_err(|e| bad(e.to_string()))?,
        Some(v) => v.to_owned(),
    };
    if payload.get().len() > d.max_payload {
        return Err(BadRequest {
            code: "payload_too_large",
            message: format!(
                "{at}payload is {} bytes, over the limit of {} bytes: send a smaller payload \
                 (keep large data elsewhere and pass a reference) or raise `max_payload`",
                payload.get().len(),
                d.max_payload
            ),
        });
    }
    let priority = match present(r.priority) {
        None => job::DEFAULT_PRIORITY,
        Some(v) => match serde_json::from_str::<serde_json::Value>(v.get()) {
            Ok(serde_json::Value::String(s)) => job::parse_priority(&s),
            Ok(serde_json::Value::Number(n)) => job::parse_priority(&n.to_string()),
            _ => job::parse_priority(v.get()),
        }
        .map_err(|e| bad(format!("`priority`: {e}")))?,
    };
    let delay = match present(r.delay) {
        None => None,
        Some(v) => Some(duration_field("delay", v).map_err(bad)?),
    };
    let run_at = match present(r.run_at) {
        None => None,
        Some(v) => {
            let text = match serde_json::from_str::<serde_json::Value>(v.get()) {
                Ok(serde_json::Value::String(s)) => s,
                Ok(serde_json::Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(bad(format!(
                        "`run_at` must be an RFC 3339 time (got {})",
                        v.get()
                    )));
                }
            };
            Some(job::serde_time::parse_time(&text).map_err(|e| bad(format!("`run_at`: {e}")))?)
        }
    };
    let run_at = match (delay, run_at) {
        (Some(_), Some(_)) => {
            return Err(bad("give either `delay` or `run_at`, not both".into()));
        }
        (Some(delay), None) => Some(d.now.saturating_add(job::millis_i64(delay))),
        (None, at) => at,
    };
    let max_attempts = match present(r.max_attempts) {
        None => (d.plugin_attempts)(&job_type).unwrap_or(d.max_attempts),
        Some(v) => match serde_json::from_str::<i64>(v.get()) {
            Ok(n) if (1..=1000).contains(&n) => n as u32,
            _ => {
                return Err(bad(format!(
                    "`max_attempts` must be a whole number from 1 to 1000 (got {})",
                    v.get()
                )));
            }
        },
    };
    let unique_key = match present(r.unique_key) {
        None => None,
        Some(v) => Some(string_field("unique_key", v).map_err(bad)?),
    };
    let timeout_ms = match present(r.timeout) {
        None => None,
        Some(v) => {
            let t = duration_field("timeout", v).map_err(bad)?;
            if t.is_zero() {
                return Err(bad("`timeout` must be longer than 0s".into()));
            }
            // A job may ask for less time than its plugin allows, never more.
            let (ceiling, whose) = match (d.plugin_timeout)(&job_type) {
                Some(m) => (m, "its plugin's manifest `timeout`"),
                None => (d.job_timeout, "the daemon's `job_timeout`"),
            };
            if t > ceiling {
                return Err(bad(format!(
                    "`timeout` of {} is over the limit of {} for type `{job_type}` ({whose}): \
                     ask for at most {}",
                    crate::units::show(t),
                    crate::units::show(ceiling),
                    crate::units::show(ceiling)
                )));
            }
            Some(job::millis_u64(t))
        }
    };
    let backoff = match present(r.backoff) {
        None => None,
        Some(v) => {
            let b: RawBackoff = serde_json::from_str(v.get()).map_err(|e| {
                bad(format!(
                    "`backoff` must be {{\"base\": \"1s\", \"cap\": \"5m\", \"jitter\": \
                     \"full\"|\"decorrelated\"|\"none\"}}: {e}"
                ))
            })?;
            let base = parse_duration(&b.base)
                .map_err(|why| bad(format!("`backoff.base` (got {:?}): {why}", b.base)))?;
            let cap = match &b.cap {
                None => std::time::Duration::from_secs(3600).max(base),
                Some(c) => parse_duration(c)
                    .map_err(|why| bad(format!("`backoff.cap` (got {c:?}): {why}")))?,
            };
            let policy = BackoffPolicy::new(base, cap).with_jitter(b.jitter.unwrap_or_default());
            policy
                .validate()
                .map_err(|e| bad(format!("`backoff`: {e}")))?;
            Some(policy)
        }
    };
    let window = |name: &str, v: Option<&RawValue>| -> Result<Option<u64>, BadRequest> {
        match present(v) {
            None => Ok(None),
            Some(v) => Ok(Some(job::millis_u64(duration_field(name, v).map_err(bad)?))),
        }
    };
    let unique_for_ms = window("unique_for", r.unique_for)?;
    let debounce_ms = window("debounce", r.debounce)?;
    let new = NewJob {
        id: job::new_job_id(),
        job_type,
        payload,
        priority,
        max_attempts,
        run_at,
        timeout_ms,
        unique_key,
        backoff,
        unique_for_ms,
        debounce_ms,
    };
    new.validate(d.max_payload)
        .map_err(|e| bad(e.to_string()))?;
    Ok(new)
}

/// JSON `null` counts as absent.
fn present(v: Option<&RawValue>) -> Option<&RawValue> {
    v.filter(|v| v.get().trim() != "null")
}

fn string_field(name: &str, v: &RawValue) -> Result<String, String> {
    serde_json::from_str::<String>(v.get())
        .map_err(|_| format!("`{name}` must be a string (got {})", clip(v.get())))
}

fn duration_field(name: &str, v: &RawValue) -> Result<std::time::Duration, String> {
    let text = serde_json::from_str::<String>(v.get()).map_err(|_| {
        format!(
            "`{name}` must be a duration string like \"30s\", \"5m\" or \"24h\" (got {})",
            clip(v.get())
        )
    })?;
    parse_duration(&text).map_err(|why| format!("`{name}` (got {text:?}): {why}"))
}

/// Keep echoed input short in error messages.
fn clip(s: &str) -> String {
    if s.len() <= 60 {
        s.to_string()
    } else {
        let mut end = 60;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

/// A job as the API answers it.
#[derive(Debug, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: Job,
    /// Whether a plugin loaded in this daemon handles the job's type.
    pub handled: bool,
    /// Set on enqueue answers: false when a live job already held the unique key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    /// Why a job is waiting, when that is not obvious (no plugin handles its type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl JobView {
    pub fn new(job: Job, handled: bool) -> Self {
        let note = (!handled && job.status.is_live()).then(|| {
            format!(
                "no loaded plugin handles type `{}`: the job waits until one is loaded \
                 (drop {}.wasm into the plugins folder) or another daemon takes it",
                job.job_type, job.job_type
            )
        });
        Self {
            job,
            handled,
            created: None,
            note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> SubmitDefaults<'static> {
        SubmitDefaults {
            max_payload: 100,
            max_attempts: 4,
            plugin_attempts: &|t| (t == "flaky").then_some(9),
            job_timeout: std::time::Duration::from_secs(30),
            plugin_timeout: &|t| (t == "loop").then_some(std::time::Duration::from_secs(2)),
            now: 1_000_000,
        }
    }

    fn err(body: &str) -> BadRequest {
        parse_submit(body.as_bytes(), d()).unwrap_err()
    }

    #[test]
    fn full_request_becomes_a_new_job() {
        let j = parse_submit(
            br#"{"type":"echo","payload":{"b":1,"a":[1,2]},"priority":"high","delay":"30s",
                "max_attempts":2,"unique_key":"k","timeout":"5s",
                "backoff":{"base":"1s","cap":"1m","jitter":"none"}}"#,
            d(),
        )
        .unwrap();
        assert_eq!(j.job_type, "echo");
        assert_eq!(j.payload.get(), r#"{"b":1,"a":[1,2]}"#);
        assert_eq!(j.priority, 1);
        assert_eq!(j.run_at, Some(1_030_000));
        assert_eq!(j.max_attempts, 2);
        assert_eq!(j.unique_key.as_deref(), Some("k"));
        assert_eq!(j.timeout_ms, Some(5000));
        assert_eq!(j.backoff.unwrap().jitter, Jitter::None);
    }

    #[test]
    fn minimal_request_gets_defaults() {
        let j = parse_submit(br#"{"type":"echo"}"#, d()).unwrap();
        assert_eq!(j.payload.get(), "{}");
        assert_eq!(j.priority, 5);
        assert_eq!(j.max_attempts, 4);
        assert_eq!(j.run_at, None);
        let j = parse_submit(br#"{"type":"echo","priority":7,"run_at":null}"#, d()).unwrap();
        assert_eq!(j.priority, 7);
        let j = parse_submit(br#"{"type":"flaky"}"#, d()).unwrap();
        assert_eq!(
            j.max_attempts, 9,
            "the plugin's max_attempts applies when none is asked"
        );
    }

    #[test]
    fn malformed_json_says_where() {
        let e = err(r#"{"type": "echo", "#);
        assert_eq!(e.code, "bad_json");
        assert!(
            e.message.contains("malformed JSON") && e.message.contains("line 1"),
            "{e:?}"
        );
        assert_eq!(err("").code, "bad_json");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = err(r#"{"type": 12}"#);
        assert!(
            e.message.contains("`type` must be a string (got 12)"),
            "{e:?}"
        );
        let e = err(r#"{"type": "echo", "max_attempts": "three"}"#);
        assert!(e.message.contains("`max_attempts`"), "{e:?}");
        let e = err(r#"{"type": "echo", "delay": 30}"#);
        assert!(
            e.message.contains("`delay` must be a duration string"),
            "{e:?}"
        );
        let e = err(r#"[1,2]"#);
        assert!(e.message.contains("must be a JSON object"), "{e:?}");
    }

    #[test]
    fn unknown_priority_and_fields_are_refused() {
        let e = err(r#"{"type": "echo", "priority": "urgent"}"#);
        assert!(
            e.message.contains("`priority`: invalid priority `urgent`"),
            "{e:?}"
        );
        let e = err(r#"{"type": "echo", "priority": 11}"#);
        assert!(e.message.contains("invalid priority `11`"), "{e:?}");
        let e = err(r#"{"type": "echo", "prio": 1}"#);
        assert!(e.message.contains("unknown field `prio`"), "{e:?}");
    }

    #[test]
    fn oversized_payload_says_both_sizes() {
        let big = format!(r#"{{"type": "echo", "payload": "{}"}}"#, "x".repeat(200));
        let e = err(&big);
        assert_eq!(e.code, "payload_too_large");
        assert!(
            e.message.contains("202 bytes") && e.message.contains("limit of 100"),
            "{e:?}"
        );
    }

    #[test]
    fn a_job_timeout_over_its_plugin_limit_is_refused() {
        let e = err(r#"{"type":"loop","timeout":"15s"}"#);
        assert!(e.message.contains("over the limit of 2s"), "{e:?}");
        let e = err(r#"{"type":"other","timeout":"31s"}"#);
        assert!(e.message.contains("`job_timeout`"), "{e:?}");
        let j = parse_submit(br#"{"type":"loop","timeout":"1s"}"#, d()).unwrap();
        assert_eq!(j.timeout_ms, Some(1000));
    }

    #[test]
    fn a_payload_nested_deeper_than_the_limit_is_refused() {
        let deep = |n: usize| format!("{}0{}", "[".repeat(n), "]".repeat(n));
        let big = SubmitDefaults {
            max_payload: 1 << 20,
            ..d()
        };
        let body = format!(r#"{{"type":"echo","payload":{}}}"#, deep(200_000));
        let e = parse_submit(body.as_bytes(), big).unwrap_err();
        assert!(e.message.contains("nested"), "{e:?}");
        let e = parse_batch(
            format!(r#"[{{"type":"a"}},{{"type":"a","payload":{}}}]"#, deep(65)).as_bytes(),
            SubmitDefaults {
                max_payload: 1 << 20,
                ..d()
            },
        )
        .unwrap_err();
        assert!(e.message.starts_with("jobs[1]: payload is nested"), "{e:?}");
    }

    #[test]
    fn times_past_year_9999_are_refused() {
        for body in [
            r#"{"type":"echo","run_at":9223372036854775807}"#,
            r#"{"type":"echo","delay":"100000years"}"#,
        ] {
            let e = err(body);
            assert!(e.message.contains("year 9999"), "{body}: {e:?}");
        }
    }

    #[test]
    fn delay_and_run_at_exclude_each_other() {
        let e = err(r#"{"type":"echo","delay":"1s","run_at":"2030-01-01T00:00:00Z"}"#);
        assert!(e.message.contains("not both"), "{e:?}");
    }

    #[test]
    fn batch_accepts_both_shapes_and_names_the_index() {
        let jobs = parse_batch(br#"{"jobs":[{"type":"a"},{"type":"b"}]}"#, d()).unwrap();
        assert_eq!(jobs.len(), 2);
        let jobs = parse_batch(br#"[{"type":"a"}]"#, d()).unwrap();
        assert_eq!(jobs[0].job_type, "a");
        let e = parse_batch(br#"[{"type":"a"},{"type":"b","priority":0}]"#, d()).unwrap_err();
        assert!(e.message.starts_with("jobs[1]: `priority`"), "{e:?}");
        assert!(parse_batch(br#"{"jobs":[]}"#, d()).is_err());
    }

    #[test]
    fn job_view_flattens_the_job_and_keeps_raw_json() {
        let new = parse_submit(br#"{"type":"echo","payload":{"z":1,"a":2}}"#, d()).unwrap();
        let job = Job::from_new(new, 1_000);
        let text = serde_json::to_string(&JobView::new(job, false)).unwrap();
        assert!(text.contains(r#""payload":{"z":1,"a":2}"#), "{text}");
        assert!(text.contains(r#""handled":false"#), "{text}");
        assert!(text.contains(r#""type":"echo""#), "{text}");
        assert!(
            text.contains("no loaded plugin handles type `echo`"),
            "{text}"
        );
    }
}
