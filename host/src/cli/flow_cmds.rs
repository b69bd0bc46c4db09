//! `spool pause`, `spool resume`, `spool limits` and `spool schedules`: flow control, through the
//! daemon's `/api/v1/types` and `/api/v1/schedules` endpoints.

use super::LimitsArgs;
use super::client::{Client, encode};
use super::client_cmds::{Res, other};
use super::table::Table;
use super::{LimitsAction, ScheduleAction, SchedulesArgs};
use serde_json::{Value, json};
use std::process::ExitCode;

pub async fn pause(client: &Client, job_type: &str, pause: bool, json: bool) -> Res {
    let action = if pause { "pause" } else { "resume" };
    let answer = client
        .post(
            &format!("/api/v1/types/{}/{action}", encode(job_type)),
            None,
        )
        .await?;
    if json {
        println!("{}", answer.text());
    } else if pause {
        println!(
            "paused {job_type}: no daemon starts its jobs until `spool resume {job_type}` \
             (enqueues are still accepted; running jobs finish)"
        );
    } else {
        println!("resumed {job_type}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn limits(client: &Client, args: LimitsArgs, json: bool) -> Res {
    let (job_type, body) = match args.action {
        None => return list(client, json).await,
        Some(LimitsAction::Set {
            job_type,
            rate,
            concurrency,
        }) => {
            if rate.is_none() && concurrency.is_none() {
                return Err(other(
                    "nothing to set: give --rate (e.g. 100/1m) and/or --concurrency (e.g. 5)",
                ));
            }
            let mut body = serde_json::Map::new();
            if let Some(r) = rate {
                body.insert("rate_limit".into(), json!(r));
            }
            if let Some(c) = concurrency {
                body.insert("global_concurrency".into(), json!(c));
            }
            (job_type, body)
        }
        Some(LimitsAction::Clear {
            job_type,
            rate,
            concurrency,
        }) => {
            let both = !rate && !concurrency;
            let mut body = serde_json::Map::new();
            if rate || both {
                body.insert("rate_limit".into(), Value::Null);
            }
            if concurrency || both {
                body.insert("global_concurrency".into(), Value::Null);
            }
            (job_type, body)
        }
    };
    let answer = client
        .put(
            &format!("/api/v1/types/{}", encode(&job_type)),
            Value::Object(body).to_string().into_bytes(),
        )
        .await?;
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    let v = answer.json()?;
    println!(
        "{job_type}: rate limit {}, global concurrency {}",
        shown(v.get("rate_limit")),
        shown(v.get("global_concurrency"))
    );
    Ok(ExitCode::SUCCESS)
}

fn shown(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "none".into(),
    }
}

fn source(view: &Value, field: &str) -> &'static str {
    let set = |part: &str| {
        view.get(part)
            .and_then(|p| p.get(field))
            .is_some_and(|v| !v.is_null())
    };
    if set("overrides") {
        " (override)"
    } else if set("manifest") {
        " (manifest)"
    } else {
        ""
    }
}

async fn list(client: &Client, json: bool) -> Res {
    let answer = client.get("/api/v1/types").await?;
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    let v = answer.json()?;
    let mut t = Table::new(&["TYPE", "STATE", "RATE LIMIT", "GLOBAL CONCURRENCY"]);
    if let Some(types) = v.get("types").and_then(Value::as_object) {
        for (name, view) in types {
            let paused = view.get("paused").and_then(Value::as_bool).unwrap_or(false);
            let state = match view.get("held_until").and_then(Value::as_str) {
                _ if paused => "paused".to_string(),
                Some(until) => format!("held until {until}"),
                None => "running".to_string(),
            };
            t.row(vec![
                name.clone(),
                state,
                shown(view.get("rate_limit")) + source(view, "rate_limit"),
                shown(view.get("global_concurrency")) + source(view, "global_concurrency"),
            ]);
        }
    }
    print!("{}", t.render());
    Ok(ExitCode::SUCCESS)
}

pub async fn schedules(client: &Client, args: SchedulesArgs, json: bool) -> Res {
    let answer = match args.action {
        None => {
            let answer = client.get("/api/v1/schedules").await?;
            if json {
                println!("{}", answer.text());
            } else {
                print_schedules(&answer.json()?);
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(ScheduleAction::Add {
            name,
            cron,
            job_type,
            payload,
            timezone,
            missed,
            priority,
            max_attempts,
        }) => {
            let payload: Value = serde_json::from_str(&payload).map_err(|e| {
                other(format!(
                    "--payload is not valid JSON ({e}); write it like '{{\"full\": true}}'"
                ))
            })?;
            let mut body = json!({
                "name": name,
                "cron": cron,
                "type": job_type,
                "payload": payload,
                "timezone": timezone,
                "missed": missed,
            });
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            if let Some(a) = max_attempts {
                body["max_attempts"] = json!(a);
            }
            client
                .post("/api/v1/schedules", Some(body.to_string().into_bytes()))
                .await?
        }
        Some(ScheduleAction::Remove { name }) => {
            client
                .delete(&format!("/api/v1/schedules/{}", encode(&name)))
                .await?
        }
        Some(ScheduleAction::Pause { name }) => {
            client
                .post(&format!("/api/v1/schedules/{}/pause", encode(&name)), None)
                .await?
        }
        Some(ScheduleAction::Resume { name }) => {
            client
                .post(&format!("/api/v1/schedules/{}/resume", encode(&name)), None)
                .await?
        }
    };
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    let v = answer.json()?;
    if let Some(name) = v.get("deleted").and_then(Value::as_str) {
        println!("removed schedule {name}");
    } else {
        print_schedules(&json!({ "schedules": [v] }));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_schedules(v: &Value) {
    let mut t = Table::new(&[
        "NAME",
        "CRON",
        "TIMEZONE",
        "TYPE",
        "STATE",
        "LAST TICK",
        "NEXT",
    ]);
    for s in v
        .get("schedules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let paused = s.get("paused").and_then(Value::as_bool).unwrap_or(false);
        let next = match s.get("next").and_then(Value::as_array) {
            Some(times) => times
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            None => format!("cannot fire: {}", text("error")),
        };
        let mut state = if paused { "paused" } else { "active" }.to_string();
        if let Some(p) = s.get("plugin").and_then(Value::as_str) {
            state.push_str(&format!(" (plugin {p})"));
        }
        t.row(vec![
            text("name"),
            text("cron"),
            text("timezone"),
            text("type"),
            state,
            s.get("last_tick")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
            next,
        ]);
    }
    print!("{}", t.render());
}
