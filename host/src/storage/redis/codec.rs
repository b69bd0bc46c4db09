//! How a job is stored in its hash (`{prefix}:job:<id>`), both ways, and how script replies
//! are read. Absent optional fields are absent hash fields; JSON values (payload, result,
//! progress, backoff, logs) are stored as their JSON text. `lease` and `worker` are internal.

use crate::job::{BackoffPolicy, Job, JobState, Millis, NewJob, Progress};
use crate::storage::{Event, StorageError};
use redis::Value;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// States in the order lua/stats.lua reports counts.
pub const STATES: [JobState; 7] = [
    JobState::Scheduled,
    JobState::Pending,
    JobState::Running,
    JobState::Retrying,
    JobState::Completed,
    JobState::Failed,
    JobState::Cancelled,
];

fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!(
        "redis holds data spool cannot read ({what}); was the prefix used by another program?"
    ))
}

fn parse_state(s: &str) -> Option<JobState> {
    STATES
        .iter()
        .copied()
        .find(|st| super::keys::state_name(*st) == s)
}

/// A job hash's fields as read, in the reply's order. A hash has a score of fields, each
/// taken once: a scan finds one as fast as hashing its name would, and reading a claimed job
/// builds no map (the map's hashing and copies were 4% of a draining daemon, perf).
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The value of field `name`, taken out.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.swap_remove(i).1)
    }

    /// Sets field `name` (replacing it when present).
    #[cfg(test)]
    pub fn set(&mut self, name: &str, value: &str) {
        self.take(name);
        self.0.push((name.to_owned(), value.to_owned()));
    }
}

impl FromIterator<(String, String)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// A job from its hash fields.
pub fn job_from_fields(mut f: Fields) -> Result<Job, StorageError> {
    let id = f
        .take("id")
        .ok_or_else(|| corrupt("a job hash without `id`"))?;
    let ctx = |field: &str| format!("field `{field}` of job `{id}`");
    let mut take = |name: &str| f.take(name);
    let req = |v: Option<String>, name: &str| v.ok_or_else(|| corrupt(ctx(name)));
    fn num<T: std::str::FromStr>(v: &str, what: String) -> Result<T, StorageError> {
        v.parse().map_err(|_| corrupt(what))
    }
    let raw = |v: String, name: &str| RawValue::from_string(v).map_err(|_| corrupt(ctx(name)));

    let job_type = req(take("type"), "type")?;
    let payload = raw(req(take("payload"), "payload")?, "payload")?;
    let status_s = req(take("status"), "status")?;
    let status = parse_state(&status_s).ok_or_else(|| corrupt(ctx("status")))?;
    let priority = num(&req(take("priority"), "priority")?, ctx("priority"))?;
    let attempt = num(
        &take("attempt").unwrap_or_else(|| "0".into()),
        ctx("attempt"),
    )?;
    let max_attempts = num(
        &req(take("max_attempts"), "max_attempts")?,
        ctx("max_attempts"),
    )?;
    let run_at = num(&req(take("run_at"), "run_at")?, ctx("run_at"))?;
    let created_at = num(&req(take("created_at"), "created_at")?, ctx("created_at"))?;
    let opt_num = |v: Option<String>, name: &str| -> Result<Option<i64>, StorageError> {
        v.map(|v| num::<i64>(&v, ctx(name))).transpose()
    };
    let started_at = opt_num(take("started_at"), "started_at")?;
    let finished_at = opt_num(take("finished_at"), "finished_at")?;
    // Only a running job's lease means anything: a completion leaves the lease fields in
    // the hash (lua/complete.lua).
    let lease_expires_at = match take("lease_expires_at") {
        Some(v) if status == JobState::Running => Some(num::<i64>(&v, ctx("lease_expires_at"))?),
        _ => None,
    };
    let timeout_ms = take("timeout_ms")
        .map(|v| num::<u64>(&v, ctx("timeout_ms")))
        .transpose()?;
    let progress = take("progress")
        .map(|v| serde_json::from_str::<Progress>(&v).map_err(|_| corrupt(ctx("progress"))))
        .transpose()?;
    let backoff = take("backoff")
        .map(|v| serde_json::from_str::<BackoffPolicy>(&v).map_err(|_| corrupt(ctx("backoff"))))
        .transpose()?;
    let logs = match take("logs") {
        Some(v) => serde_json::from_str::<Vec<String>>(&v).map_err(|_| corrupt(ctx("logs")))?,
        None => Vec::new(),
    };
    let result = take("result").map(|v| raw(v, "result")).transpose()?;
    Ok(Job {
        job_type,
        payload,
        priority,
        status,
        attempt,
        max_attempts,
        run_at,
        created_at,
        started_at,
        finished_at,
        timeout_ms,
        unique_key: take("unique_key"),
        unique_for_ms: take("unique_for")
            .map(|v| num::<u64>(&v, ctx("unique_for")))
            .transpose()?,
        progress,
        result,
        error: take("error"),
        logs,
        plugin_version: take("plugin_version"),
        backoff,
        lease_expires_at,
        cancel_requested: take("cancel_requested").as_deref() == Some("1"),
        id,
    })
}

/// The hash fields of a job, for `import_jobs` (lua/import.lua).
pub fn job_to_fields(job: &Job) -> Vec<(&'static str, String)> {
    let mut f: Vec<(&'static str, String)> = vec![
        ("id", job.id.clone()),
        ("type", job.job_type.clone()),
        ("payload", job.payload.get().to_owned()),
        ("priority", job.priority.to_string()),
        ("status", super::keys::state_name(job.status).to_owned()),
        ("attempt", job.attempt.to_string()),
        ("max_attempts", job.max_attempts.to_string()),
        ("run_at", job.run_at.to_string()),
        ("created_at", job.created_at.to_string()),
        ("logs", json(&job.logs)),
        (
            "cancel_requested",
            if job.cancel_requested { "1" } else { "0" }.to_owned(),
        ),
    ];
    let mut opt = |name: &'static str, v: Option<String>| {
        if let Some(v) = v {
            f.push((name, v));
        }
    };
    opt("started_at", job.started_at.map(|v| v.to_string()));
    opt("finished_at", job.finished_at.map(|v| v.to_string()));
    opt(
        "lease_expires_at",
        job.lease_expires_at.map(|v| v.to_string()),
    );
    opt("timeout_ms", job.timeout_ms.map(|v| v.to_string()));
    opt("unique_key", job.unique_key.clone());
    opt("unique_for", job.unique_for_ms.map(|v| v.to_string()));
    opt("progress", job.progress.as_ref().map(json));
    opt("result", job.result.as_ref().map(|r| r.get().to_owned()));
    opt("error", job.error.clone());
    opt("plugin_version", job.plugin_version.clone());
    opt("backoff", job.backoff.as_ref().map(json));
    f
}

/// JSON text of a value that always serialises (plain data, no maps with odd keys).
pub fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// The 11 script arguments (NEW_JOB_ARGS) lua/lib.lua's `insert_new` reads for one new job.
pub fn new_job_args(j: &NewJob) -> [String; 11] {
    [
        j.id.clone(),
        j.job_type.clone(),
        j.payload.get().to_owned(),
        j.priority.to_string(),
        j.max_attempts.to_string(),
        j.run_at.map(|t| t.to_string()).unwrap_or_default(),
        j.timeout_ms.map(|t| t.to_string()).unwrap_or_default(),
        j.unique_key.clone().unwrap_or_default(),
        j.backoff.as_ref().map(json).unwrap_or_default(),
        j.unique_for_ms.map(|t| t.to_string()).unwrap_or_default(),
        j.debounce_ms.map(|t| t.to_string()).unwrap_or_default(),
    ]
}

// ---- reading script replies -------------------------------------------------------------

pub fn unexpected(what: &str, v: &Value) -> StorageError {
    StorageError::Internal(format!("unexpected reply from redis for {what}: {v:?}"))
}

pub fn as_array(v: Value, what: &str) -> Result<Vec<Value>, StorageError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(what, &other)),
    }
}

pub fn as_string(v: &Value, what: &str) -> Result<String, StorageError> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::VerbatimString { text, .. } => Ok(text.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(unexpected(what, other)),
    }
}

pub fn as_int(v: &Value, what: &str) -> Result<i64, StorageError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => as_string(other, what)?
            .parse()
            .map_err(|_| unexpected(what, other)),
    }
}

/// The text of a reply value, taking a bulk string's bytes without a copy.
fn into_string(v: Value, what: &str) -> Result<String, StorageError> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        other => as_string(&other, what),
    }
}

/// The fields of a script's flat `HGETALL` reply; `None` for nil/false/empty.
pub fn fields_from_value(v: Value) -> Result<Option<Fields>, StorageError> {
    let pairs: Vec<Value> = match v {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        other => as_array(other, "job fields")?,
    };
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut f = Vec::with_capacity(pairs.len() / 2);
    let mut it = pairs.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        f.push((into_string(k, "job field")?, into_string(v, "job value")?));
    }
    Ok(Some(Fields(f)))
}

/// A job from a script's flat `HGETALL` reply; `None` for nil/false.
pub fn job_from_value(v: Value) -> Result<Option<Job>, StorageError> {
    fields_from_value(v)?.map(job_from_fields).transpose()
}

/// A job that a script promised to return.
pub fn required_job(v: Value, what: &str) -> Result<Job, StorageError> {
    job_from_value(v)?
        .ok_or_else(|| StorageError::Internal(format!("redis returned no job for {what}")))
}

/// Events per stream entry at most; event `k` of entry `ms-s` has the id
/// `ms-(s * EVENTS_PER_ENTRY + k)` (lua/lib.lua `write_events`, which writes them).
pub const EVENTS_PER_ENTRY: u64 = 1000;

/// A stream or event id, `ms-seq` (a bare integer reads as `n-0`).
pub fn parse_event_id(id: &str) -> Result<(u64, u64), StorageError> {
    crate::storage::event_ids::parse_event_position(id)
}

/// Where to resume after event `after`: the id of the stream entry that holds it (XRANGE
/// starts there, inclusive) and the id of the event itself, as (ms, seq).
pub fn resume_point(after: &str) -> Result<(String, (u64, u64)), StorageError> {
    let (ms, seq) = parse_event_id(after)?;
    Ok((format!("{ms}-{}", seq / EVENTS_PER_ENTRY), (ms, seq)))
}

/// The first stream id after entry `ms-seq` (XRANGE's start is inclusive; `(id` needs
/// Redis 6.2).
pub fn stream_id_after(ms: u64, seq: u64) -> String {
    match seq.checked_add(1) {
        Some(s) => format!("{ms}-{s}"),
        None => format!("{}-0", ms.saturating_add(1)),
    }
}

/// A stream entry's events, with the entry's id and each event's position as (ms, seq),
/// the form `parse_event_id` gives, for comparing without parsing again.
pub struct EntryEvents {
    pub entry: (u64, u64),
    pub events: Vec<((u64, u64), Event)>,
}

/// The events of a stream entry (`[id, [field, value, ...]]`): a batch `{at, n, e}` written
/// by lua/lib.lua, or a single event `{kind, job_id, job_type, at, data}` as earlier versions
/// wrote one entry per event (read as an entry of one event).
pub fn events_from_entry(v: Value) -> Result<EntryEvents, StorageError> {
    let mut parts = as_array(v, "stream entry")?.into_iter();
    let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(StorageError::Internal(
            "short stream entry from redis".into(),
        ));
    };
    let id = as_string(&id, "event id")?;
    let bad_id = || corrupt(format!("stream entry id `{id}`"));
    let (ms, seq) = parse_event_id(&id).map_err(|_| bad_id())?;
    let first = seq.checked_mul(EVENTS_PER_ENTRY).ok_or_else(bad_id)?;
    let at_k = |k: u64| {
        let pos = (ms, first + k);
        (pos, format!("{}-{}", pos.0, pos.1))
    };
    let mut f: HashMap<String, String> = HashMap::new();
    let fields = match fields {
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        other => as_array(other, "event fields")?,
    };
    let mut it = fields.iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        f.insert(as_string(k, "event field")?, as_string(v, "event value")?);
    }
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let at: Millis = f.get("at").and_then(|v| v.parse().ok()).unwrap_or(0);
    let Some(batch) = f.get("e") else {
        let data = match f.get("data") {
            Some(d) => {
                serde_json::from_str(d).map_err(|_| corrupt(format!("data of event `{id}`")))?
            }
            None => serde_json::Value::Object(Default::default()),
        };
        let (pos, event_id) = at_k(0);
        let event = Event {
            kind: f
                .remove("kind")
                .ok_or_else(|| corrupt(format!("event `{id}` without kind")))?,
            job_id: non_empty(f.remove("job_id")),
            job_type: non_empty(f.remove("job_type")),
            at,
            data,
            id: event_id,
        };
        return Ok(EntryEvents {
            entry: (ms, seq),
            events: vec![(pos, event)],
        });
    };
    type Encoded = (String, String, String, serde_json::Value);
    let events: Vec<Encoded> =
        serde_json::from_str(batch).map_err(|_| corrupt(format!("events of entry `{id}`")))?;
    if events.len() as u64 > EVENTS_PER_ENTRY {
        return Err(corrupt(format!(
            "entry `{id}` with more than {EVENTS_PER_ENTRY} events"
        )));
    }
    let events = events
        .into_iter()
        .zip(0..)
        .map(|((kind, job_id, job_type, data), k)| {
            let (pos, event_id) = at_k(k);
            let event = Event {
                id: event_id,
                kind,
                job_id: non_empty(Some(job_id)),
                job_type: non_empty(Some(job_type)),
                at,
                data,
            };
            (pos, event)
        })
        .collect();
    Ok(EntryEvents {
        entry: (ms, seq),
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Job {
        Job {
            id: "0190-a".into(),
            job_type: "resize".into(),
            payload: RawValue::from_string(r#"{"w":1}"#.into()).unwrap(),
            priority: 3,
            status: JobState::Running,
            attempt: 2,
            max_attempts: 4,
            run_at: 1_700_000_000_000,
            created_at: 1_700_000_000_001,
            started_at: Some(1_700_000_000_002),
            finished_at: None,
            timeout_ms: Some(30_000),
            unique_key: Some("u".into()),
            unique_for_ms: Some(60_000),
            progress: Some(Progress {
                percent: 40,
                message: Some("half".into()),
            }),
            result: None,
            error: Some("boom".into()),
            logs: vec!["a".into(), "b".into()],
            plugin_version: Some("1.0".into()),
            backoff: Some(BackoffPolicy::new(
                std::time::Duration::from_millis(10),
                std::time::Duration::from_millis(100),
            )),
            lease_expires_at: Some(1_700_000_030_000),
            cancel_requested: true,
        }
    }

    #[test]
    fn a_job_survives_the_round_trip_through_hash_fields() {
        let job = sample();
        let fields = job_to_fields(&job)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Fields>();
        let back = job_from_fields(fields).unwrap();
        assert_eq!(json(&back), json(&job));
    }

    #[test]
    fn a_hash_with_a_bad_status_is_reported_as_corrupt() {
        let mut fields = job_to_fields(&sample())
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Fields>();
        fields.set("status", "exploded");
        assert!(matches!(
            job_from_fields(fields),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn resuming_starts_at_the_entry_holding_the_given_event() {
        let (entry, at) = resume_point("1700000000000-4017").unwrap();
        assert_eq!(entry, "1700000000000-4");
        assert_eq!(at, (1700000000000, 4017));
        assert_eq!(resume_point("7").unwrap().0, "7-0");
        assert!(resume_point("abc").is_err());
        assert!(resume_point("1-x").is_err());
        assert_eq!(stream_id_after(5, 4), "5-5");
        assert_eq!(stream_id_after(5, u64::MAX), "6-0");
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(k, v)| [k.to_string(), v.to_string()])
            .map(|s| Value::BulkString(s.into_bytes()))
            .collect();
        Value::Array(vec![
            Value::BulkString(id.as_bytes().to_vec()),
            Value::Array(flat),
        ])
    }

    #[test]
    fn a_batch_entry_reads_as_its_events_with_ids_in_order() {
        let e = entry(
            "1700-2",
            &[
                ("at", "1700"),
                ("n", "2"),
                (
                    "e",
                    r#"[["job.created","a","echo",{"attempt":0}],["plugin.loaded","","",{}]]"#,
                ),
            ],
        );
        let read = events_from_entry(e).unwrap();
        assert_eq!(read.entry, (1700, 2));
        assert_eq!(read.events[1].0, (1700, 2001));
        let events: Vec<Event> = read.events.into_iter().map(|(_, e)| e).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id, "1700-2000");
        assert_eq!(events[1].id, "1700-2001");
        assert_eq!(events[0].job_id.as_deref(), Some("a"));
        assert_eq!(events[1].job_id, None);
        assert_eq!(events[1].kind, "plugin.loaded");
        assert_eq!(events[0].at, 1700);
        assert_eq!(events[0].data["attempt"], 0);
    }

    #[test]
    fn a_single_event_entry_of_the_old_form_still_reads() {
        let e = entry(
            "1700-3",
            &[
                ("kind", "job.started"),
                ("job_id", "a"),
                ("job_type", "echo"),
                ("at", "1700"),
                ("data", r#"{"attempt":1}"#),
            ],
        );
        let events: Vec<Event> = events_from_entry(e)
            .unwrap()
            .events
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "1700-3000");
        assert_eq!(events[0].kind, "job.started");
    }

    #[test]
    fn a_batch_that_is_not_json_is_corrupt() {
        let e = entry("1700-0", &[("at", "1700"), ("n", "1"), ("e", "[oops")]);
        assert!(matches!(
            events_from_entry(e),
            Err(StorageError::Corrupt(_))
        ));
    }
}
