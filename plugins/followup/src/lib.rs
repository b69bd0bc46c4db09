//! `followup` (test fixture): enqueues one follow-up job and returns its reserved id.
//!
//! Payload (all optional):
//! `{"type": "echo", "payload": {"from": "<this job's id>"}, "priority": null,
//!   "delay_ms": null, "unique_key": null, "fail_after_enqueue": false}`.
//! With `fail_after_enqueue` the handler fails permanently after enqueueing, which must drop
//! the follow-up (the host commits follow-ups only on success).
//!
//! Result: `{"followup_id": "<id>", "followup_type": "echo"}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spool_sdk::{Error, Job, NewJob, enqueue, log};

#[derive(Deserialize)]
struct Payload {
    #[serde(default = "default_type", rename = "type")]
    job_type: String,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    priority: Option<u8>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    unique_key: Option<String>,
    #[serde(default)]
    fail_after_enqueue: bool,
}

fn default_type() -> String {
    "echo".to_owned()
}

#[derive(Serialize)]
struct Enqueued {
    followup_id: String,
    followup_type: String,
}

fn handle(job: Job) -> Result<Enqueued, Error> {
    let payload: Payload = job.payload()?;
    let body = payload
        .payload
        .unwrap_or_else(|| serde_json::json!({ "from": job.id() }));
    let mut new_job = NewJob::new(payload.job_type.clone(), &body);
    if let Some(priority) = payload.priority {
        new_job = new_job.priority(priority);
    }
    if let Some(ms) = payload.delay_ms {
        new_job = new_job.delay(Duration::from_millis(ms));
    }
    if let Some(key) = payload.unique_key {
        new_job = new_job.unique_key(key);
    }
    let followup_id = enqueue(new_job)?;
    log::info!("enqueued `{}` job {followup_id}", payload.job_type);
    if payload.fail_after_enqueue {
        return Err(Error::fail(format!(
            "followup: failing after enqueueing {followup_id}, as the payload asked"
        )));
    }
    Ok(Enqueued {
        followup_id,
        followup_type: payload.job_type,
    })
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing;

    #[test]
    fn enqueues_an_echo_job_by_default() {
        let host = testing::FakeHost::install();
        let out = testing::call(handle, Job::new("followup", "{}").with_id("j1")).unwrap();
        assert_eq!(
            out,
            r#"{"followup_id":"fake-job-1","followup_type":"echo"}"#
        );
        let jobs = host.enqueued();
        assert_eq!(jobs[0].job_type, "echo");
        assert_eq!(jobs[0].payload, r#"{"from":"j1"}"#);
    }

    #[test]
    fn passes_the_requested_settings() {
        let host = testing::FakeHost::install();
        let payload = r#"{"type": "slow", "payload": {"ms": 5}, "priority": 1, "delay_ms": 30,
                          "unique_key": "u"}"#;
        testing::call(handle, Job::new("followup", payload)).unwrap();
        let job = &host.enqueued()[0];
        assert_eq!(
            (
                job.job_type.as_str(),
                job.payload.as_str(),
                job.priority,
                job.delay_ms
            ),
            ("slow", r#"{"ms":5}"#, Some(1), Some(30))
        );
        assert_eq!(job.unique_key.as_deref(), Some("u"));
    }

    #[test]
    fn refused_follow_ups_fail_the_job() {
        let _host = testing::FakeHost::install();
        let error = testing::call(handle, Job::new("followup", r#"{"priority": 11}"#)).unwrap_err();
        assert!(!error.is_retry());
    }
}
