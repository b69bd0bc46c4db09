//! The client commands (`submit`, `job`, `jobs`, `retry`, `cancel`, `delete`, `stats`,
//! `health`, `plugins`, `events`): one API call each, printed as a table or, with `--json`, as
//! the daemon's JSON.

use super::client::{Client, ClientError, SseParser, encode};
use super::table::{Table, clip};
use super::{Command, EventsArgs, JobsArgs, SubmitArgs};
use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

/// `submit --wait` found the job failed or cancelled.
const EXIT_JOB_FAILED: u8 = 3;

pub async fn run(command: Command, json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::from_env()?;
    let result = match command {
        Command::Submit(args) => submit(&client, args, json).await,
        Command::Job(a) => show_job(&client, &a.id, json).await,
        Command::Jobs(args) => list_jobs(&client, args, json).await,
        Command::Retry(a) => job_action(&client, &a.id, "retry", json).await,
        Command::Cancel(a) => job_action(&client, &a.id, "cancel", json).await,
        Command::Delete(a) => delete(&client, &a.id, json).await,
        Command::Stats => stats(&client, json).await,
        Command::Health => health(&client, json).await,
        Command::Plugins => plugins(&client, json).await,
        Command::Events(args) => events(&client, args, json).await,
        Command::Pause(a) => super::flow_cmds::pause(&client, &a.job_type, true, json).await,
        Command::Resume(a) => super::flow_cmds::pause(&client, &a.job_type, false, json).await,
        Command::Limits(a) => super::flow_cmds::limits(&client, a, json).await,
        Command::Schedules(a) => super::flow_cmds::schedules(&client, a, json).await,
        Command::Daemon(_)
        | Command::Exec(_)
        | Command::Bench(_)
        | Command::New(_)
        | Command::Migrate(_) => {
            unreachable!("local commands are dispatched in cli::main")
        }
    };
    result.map_err(|e| match e {
        ClientError::Other(e) => e,
        e => anyhow::anyhow!(e),
    })
}

pub(super) type Res = Result<ExitCode, ClientError>;

pub(super) fn other(e: impl std::fmt::Display) -> ClientError {
    ClientError::Other(anyhow::anyhow!("{e}"))
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(x)) => x.to_string(),
        _ => String::new(),
    }
}

async fn submit(client: &Client, args: SubmitArgs, json: bool) -> Res {
    let payload_text = match args.payload.as_deref() {
        None => "{}".to_string(),
        Some("-") => {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .context("cannot read the payload from stdin")
                .map_err(ClientError::Other)?;
            buf
        }
        Some(p) => p.to_string(),
    };
    let payload: Box<serde_json::value::RawValue> =
        serde_json::value::RawValue::from_string(payload_text.trim().to_string()).map_err(|e| {
            other(format!(
                "the payload is not valid JSON: {e}; quote it, e.g. '{{\"name\": \"x\"}}'"
            ))
        })?;
    let mut body = json!({ "type": args.job_type });
    if let Some(p) = args.priority {
        body["priority"] = json!(p);
    }
    if let Some(d) = args.delay {
        body["delay"] = json!(format!("{}ms", d.as_millis()));
    }
    if let Some(at) = &args.at {
        body["run_at"] = json!(at);
    }
    if let Some(m) = args.max_attempts {
        body["max_attempts"] = json!(m);
    }
    if let Some(k) = &args.unique_key {
        body["unique_key"] = json!(k);
    }
    if let Some(w) = args.unique_for {
        body["unique_for"] = json!(format!("{}ms", w.as_millis()));
    }
    if let Some(d) = args.debounce {
        body["debounce"] = json!(format!("{}ms", d.as_millis()));
    }
    if let Some(t) = args.timeout {
        body["timeout"] = json!(format!("{}ms", t.as_millis()));
    }
    // Splice the payload in as raw text so it reaches the daemon byte for byte.
    let mut text = serde_json::to_string(&body).map_err(other)?;
    text.pop();
    text.push_str(",\"payload\":");
    text.push_str(payload.get());
    text.push('}');
    let answer = client.post("/api/v1/jobs", Some(text.into_bytes())).await?;
    let job = answer.json()?;
    let id = s(&job, "id").to_string();
    if !args.wait {
        if json {
            print_json(&job);
        } else if answer.status == 200 {
            println!(
                "exists {id} (unique key held by a {} job)",
                s(&job, "status")
            );
        } else {
            println!(
                "submitted {id} ({}, {})",
                s(&job, "type"),
                s(&job, "status")
            );
            if let Some(note) = job.get("note").and_then(Value::as_str) {
                eprintln!("note: {note}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        eprintln!("submitted {id}; waiting for it to finish");
    }
    let done = wait_for_job(client, &id).await?;
    let status = s(&done, "status");
    if json {
        print_json(&done);
    } else if status == "completed" {
        let result = done.get("result").cloned().unwrap_or(Value::Null);
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        eprintln!("job {id} {status}: {}", s(&done, "error"));
    }
    Ok(if status == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_JOB_FAILED)
    })
}

/// Poll until the job is completed, failed or cancelled (20 ms at first, then up to 500 ms).
async fn wait_for_job(client: &Client, id: &str) -> Result<Value, ClientError> {
    let mut pause = Duration::from_millis(20);
    loop {
        let job = client
            .get(&format!("/api/v1/jobs/{}", encode(id)))
            .await?
            .json()?;
        if matches!(s(&job, "status"), "completed" | "failed" | "cancelled") {
            return Ok(job);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

async fn show_job(client: &Client, id: &str, json: bool) -> Res {
    let answer = client.get(&format!("/api/v1/jobs/{}", encode(id))).await?;
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", describe_job(&answer.json()?));
    Ok(ExitCode::SUCCESS)
}

fn describe_job(j: &Value) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        // Plugin text (errors, progress, logs) may carry escape sequences: never raw.
        if !v.is_empty() {
            out.push_str(&format!("{k:<10}  {}\n", crate::text::escape_control(&v)));
        }
    };
    line("id", s(j, "id").into());
    line("type", s(j, "type").into());
    line("status", s(j, "status").into());
    line("priority", n(j, "priority"));
    line(
        "attempt",
        format!("{} of {}", n(j, "attempt"), n(j, "max_attempts")),
    );
    line("created", s(j, "created_at").into());
    line("run at", s(j, "run_at").into());
    line("started", s(j, "started_at").into());
    line("finished", s(j, "finished_at").into());
    line("unique key", s(j, "unique_key").into());
    line("plugin", s(j, "plugin_version").into());
    if let Some(p) = j.get("progress").filter(|p| !p.is_null()) {
        line(
            "progress",
            format!("{}% {}", n(p, "percent"), s(p, "message"))
                .trim()
                .to_string(),
        );
    }
    line("error", s(j, "error").into());
    line("note", s(j, "note").into());
    line("payload", compact(j.get("payload")));
    line("result", compact(j.get("result")));
    if let Some(logs) = j
        .get("logs")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    {
        out.push_str("logs:\n");
        for l in logs {
            out.push_str(&format!(
                "  {}\n",
                crate::text::escape_control(l.as_str().unwrap_or(""))
            ));
        }
    }
    out
}

fn compact(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

async fn list_jobs(client: &Client, args: JobsArgs, json: bool) -> Res {
    let mut q = format!("?limit={}", args.limit);
    if let Some(st) = &args.status {
        q.push_str(&format!("&status={}", encode(st)));
    }
    if let Some(t) = &args.job_type {
        q.push_str(&format!("&type={}", encode(t)));
    }
    if let Some(c) = &args.cursor {
        q.push_str(&format!("&cursor={}", encode(c)));
    }
    let answer = client.get(&format!("/api/v1/jobs{q}")).await?;
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    let page = answer.json()?;
    let mut t = Table::new(&["ID", "TYPE", "STATUS", "PRI", "ATTEMPT", "CREATED", "ERROR"]);
    for j in page
        .get("jobs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        t.row(vec![
            s(j, "id").into(),
            s(j, "type").into(),
            s(j, "status").into(),
            n(j, "priority"),
            format!("{}/{}", n(j, "attempt"), n(j, "max_attempts")),
            s(j, "created_at").into(),
            clip(&crate::text::escape_control(s(j, "error")), 60),
        ]);
    }
    if t.is_empty() {
        println!("no jobs");
    } else {
        print!("{}", t.render());
    }
    if let Some(c) = page.get("next_cursor").and_then(Value::as_str) {
        println!("more: repeat with --cursor {c}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn job_action(client: &Client, id: &str, action: &str, json: bool) -> Res {
    let answer = client
        .post(&format!("/api/v1/jobs/{}/{action}", encode(id)), None)
        .await?;
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    let j = answer.json()?;
    match (action, answer.status) {
        ("cancel", 202) => println!("cancel requested for {id}: the running job is being stopped"),
        ("cancel", _) => println!("cancelled {id}"),
        _ => println!("replayed {id}: {} again (attempts reset)", s(&j, "status")),
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(client: &Client, id: &str, json: bool) -> Res {
    client
        .delete(&format!("/api/v1/jobs/{}", encode(id)))
        .await?;
    if json {
        println!("{}", json!({ "deleted": id }));
    } else {
        println!("deleted {id}");
    }
    Ok(ExitCode::SUCCESS)
}

const STATES: [&str; 7] = [
    "pending",
    "scheduled",
    "running",
    "retrying",
    "completed",
    "failed",
    "cancelled",
];

async fn stats(client: &Client, json: bool) -> Res {
    let answer = client.get("/api/v1/stats").await?;
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    let v = answer.json()?;
    let mut header = vec!["TYPE"];
    header.extend(STATES.iter().copied());
    header.extend(["JOBS/MIN", "AVG", "P95", "OLDEST PENDING", "HANDLED"]);
    let mut t = Table::new(&header);
    let count = |counts: Option<&Value>, st: &str| {
        counts
            .and_then(|c| c.get(st))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .to_string()
    };
    if let Some(types) = v.get("types").and_then(Value::as_object) {
        for (name, ts) in types {
            let mut row = vec![name.clone()];
            row.extend(STATES.iter().map(|st| count(ts.get("counts"), st)));
            let per_min = ts
                .get("jobs_per_minute")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            row.push(format!("{per_min:.1}"));
            for key in ["avg_duration_ms", "p95_duration_ms"] {
                let ms = ts.get(key).and_then(Value::as_f64);
                row.push(
                    ms.map(|ms| format!("{ms:.1}ms"))
                        .unwrap_or_else(|| "-".into()),
                );
            }
            let age = ts.get("oldest_pending_age_ms").and_then(Value::as_u64);
            row.push(
                age.map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                    .unwrap_or_default(),
            );
            let handled = ts.get("handled").and_then(Value::as_bool).unwrap_or(false);
            row.push(if handled { "yes" } else { "NO PLUGIN" }.into());
            t.row(row);
        }
    }
    let mut total = vec!["(all)".to_string()];
    total.extend(STATES.iter().map(|st| count(v.get("totals"), st)));
    total.extend(std::iter::repeat_n(String::new(), 5));
    t.row(total);
    print!("{}", t.render());
    if let Some(w) = v.get("rate_window_s").and_then(Value::as_u64) {
        println!(
            "jobs/min, avg and p95 duration: attempts finished by this daemon in the last {w}s"
        );
    }
    if let Some(w) = v.get("workers") {
        println!("workers: {} busy of {}", n(w, "busy"), n(w, "total"));
    }
    if let Some(note) = v.get("note").and_then(Value::as_str) {
        println!("note: {note}");
    }
    let paused: Vec<&str> = v
        .get("paused_types")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !paused.is_empty() {
        println!(
            "paused (no daemon starts their jobs; `spool resume TYPE`): {}",
            paused.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn health(client: &Client, json: bool) -> Res {
    // 503 still carries the health report: read it instead of failing on the status.
    let v = match client.get("/health").await {
        Ok(a) => a.json()?,
        Err(ClientError::Api {
            status: 503,
            message,
            ..
        }) => serde_json::from_str(&message)
            .unwrap_or_else(|_| json!({ "status": "unhealthy", "problems": [message] })),
        Err(e) => return Err(e),
    };
    let status = s(&v, "status").to_string();
    if json {
        print_json(&v);
    } else {
        println!("status   {status}");
        let latency = v.pointer("/storage/latency_ms").and_then(Value::as_f64);
        let ping = latency
            .map(|l| format!(" (ping {l:.2} ms)"))
            .unwrap_or_default();
        let connected = v.pointer("/storage/connected").and_then(Value::as_bool);
        println!(
            "backend  {}{ping}{}",
            s(&v, "backend"),
            if connected == Some(false) {
                " NOT CONNECTED"
            } else {
                ""
            }
        );
        if let Some(r) = v.get("redis").and_then(Value::as_object) {
            let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            println!(
                "redis    {} ({}), memory {}, maxmemory-policy {}, {} clients",
                get("version"),
                get("role"),
                get("used_memory_human"),
                get("maxmemory_policy"),
                get("connected_clients")
            );
        }
        if let Some(f) = v.get("fallback").filter(|f| !f.is_null()) {
            let active = f.get("active").and_then(Value::as_bool).unwrap_or(false);
            println!(
                "fallback {} ({} jobs spooled)",
                if active { "ACTIVE" } else { "standby" },
                n(f, "jobs")
            );
        }
        if let Some(c) = v.get("consuming") {
            println!(
                "claims   last job claimed {}s ago",
                n(c, "last_claim_age_s")
            );
        }
        if let Some(q) = v.get("queue").and_then(Value::as_object) {
            let parts: Vec<String> = STATES
                .iter()
                .map(|st| format!("{st} {}", q.get(*st).and_then(Value::as_u64).unwrap_or(0)))
                .collect();
            println!("queue    {}", parts.join(", "));
        }
        if let Some(p) = v.get("plugins") {
            println!(
                "plugins  {} loaded, {} failed",
                n(p, "loaded"),
                n(p, "failed")
            );
        }
        if let Some(w) = v.get("workers") {
            println!("workers  {} busy of {}", n(w, "busy"), n(w, "total"));
        }
        for p in v
            .get("problems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            println!("problem  {}", p.as_str().unwrap_or(""));
        }
    }
    Ok(if status == "healthy" || status == "degraded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn plugins(client: &Client, json: bool) -> Res {
    let answer = client.get("/api/v1/plugins").await?;
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    let v = answer.json()?;
    let mut t = Table::new(&["NAME", "VERSION", "STATE", "TYPES", "ERROR"]);
    for p in v
        .get("plugins")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let types: Vec<&str> = p
            .get("types")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        t.row(vec![
            s(p, "name").into(),
            s(p, "version").into(),
            s(p, "state").into(),
            types.join(","),
            clip(s(p, "error"), 80),
        ]);
    }
    if t.is_empty() {
        println!("no plugins: drop NAME.wasm files into the daemon's plugins folder");
    } else {
        print!("{}", t.render());
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(client: &Client, args: EventsArgs, json: bool) -> Res {
    let mut q = Vec::new();
    if let Some(j) = &args.job {
        q.push(format!("job={}", encode(j)));
    }
    if let Some(t) = &args.job_type {
        q.push(format!("type={}", encode(t)));
    }
    if let Some(k) = &args.kind {
        q.push(format!("kind={}", encode(k)));
    }
    let query = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    let mut last_id = args.after.clone();
    let mut failures = 0u32;
    loop {
        let resp = match client.open_events(&query, last_id.as_deref()).await {
            Ok(r) => r,
            Err(ClientError::NoDaemon(url)) if failures > 0 && failures < 30 => {
                failures += 1;
                if failures == 2 {
                    eprintln!("lost the daemon at {url}; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        failures = 1;
        let mut parser = SseParser::default();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            for msg in parser.feed(&chunk) {
                if msg.event.as_deref() == Some("error") {
                    return Err(other(format!(
                        "the daemon ended the event stream: {}",
                        msg.data
                    )));
                }
                if msg.id.is_some() {
                    last_id = msg.id.clone();
                }
                print_event(&msg.data, json);
            }
        }
    }
}

fn print_event(data: &str, json: bool) {
    if json {
        println!("{data}");
        return;
    }
    let Ok(e) = serde_json::from_str::<Value>(data) else {
        println!("{data}");
        return;
    };
    let at = match e.get("at") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Number(ms)) => ms
            .as_i64()
            .map(crate::job::serde_time::format_rfc3339)
            .unwrap_or_default(),
        _ => String::new(),
    };
    let data = compact(e.get("data"));
    let data = if data == "{}" {
        String::new()
    } else {
        clip(&data, 120)
    };
    let line = format!(
        "{at}  {:<14}  {:<12}  {}  {data}",
        s(&e, "kind"),
        s(&e, "job_type"),
        s(&e, "job_id")
    );
    println!("{}", line.trim_end());
}
