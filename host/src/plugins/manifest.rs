//! `NAME.toml`, the optional manifest beside `NAME.wasm`, parsed strictly: an unknown key or a
//! bad value is an error that names the key (for example "`retry.backoff_cap` must be a
//! duration such as \"30s\" (got \"soon\")"). The format is documented in
//! docs/plugins.md.
//!
//! The TOML is walked by hand rather than through serde so that every error can name the full
//! key path and say what a good value looks like.

use super::secrets::SecretSource;
use crate::runtime::Instances;
use crate::runtime::http::{AllowList, HttpLimitsOverride};
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Value;

pub use crate::runtime::MAX_MEMORY;

/// A plugin's settings. `Default` is what a plugin without a manifest gets (types default to
/// the plugin's name, see `Manifest::types_or`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Job types this plugin handles; empty means `[NAME]`.
    pub types: Vec<String>,
    pub timeout: Option<Duration>,
    /// Bytes, summed over all linear memories of one instance.
    pub memory: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub retry: RetryPolicy,
    pub config: BTreeMap<String, String>,
    /// Where outbound HTTP may go, as written (each entry checked by `AllowList::parse`);
    /// empty: nowhere.
    pub allowed_hosts: Vec<String>,
    /// `[secrets]`: name -> where the daemon reads the value.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `[http]`: limits on outbound requests that differ from the daemon's.
    pub http: HttpLimitsOverride,
    /// `rate_limit` and `global_concurrency`: flow control of each of the plugin's types,
    /// held in storage so that every daemon obeys it (run-time overrides win).
    pub flow: crate::storage::flow::Limits,
    /// `[[schedules]]`: cron schedules the plugin brings (an empty `job_type` means the
    /// plugin's first type).
    pub schedules: Vec<crate::storage::flow::Schedule>,
    /// `instances`: "fresh" (the default, one instance per job) or "reuse".
    pub instances: Instances,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: Option<u32>,
    pub backoff_base: Option<Duration>,
    pub backoff_cap: Option<Duration>,
}

impl Manifest {
    /// `allowed_hosts`, parsed (it was checked when the manifest was read).
    pub fn allow_list(&self) -> AllowList {
        AllowList::parse(&self.allowed_hosts).unwrap_or_default()
    }

    /// The job types, defaulting to the plugin's name.
    pub fn types_or(&self, name: &str) -> Vec<String> {
        if self.types.is_empty() {
            vec![name.to_string()]
        } else {
            self.types.clone()
        }
    }

    /// The settings as one canonical text, which goes into the plugin's version: equal
    /// settings give equal text whatever the file's layout, order or comments. None when
    /// everything is the default (no manifest), so such a plugin's version is the hash of its
    /// `.wasm` alone. Append new fields at the end, only when they are set, so that versions
    /// of unchanged plugins survive an upgrade.
    pub(crate) fn canonical(&self) -> Option<String> {
        if *self == Manifest::default() {
            return None;
        }
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let ms = |d: Option<Duration>| d.map_or_else(String::new, |d| d.as_millis().to_string());
        let num = |n: Option<u64>| n.map_or_else(String::new, |n| n.to_string());
        let list = |items: &[String]| items.iter().map(|t| text(t)).collect::<Vec<_>>().join(",");
        let config: Vec<String> = self
            .config
            .iter()
            .map(|(k, v)| format!("{}={}", text(k), text(v)))
            .collect();
        let mut out = format!(
            "types=[{}]\ntimeout={}\nmemory={}\nmax_concurrency={}\nretry.max_attempts={}\n\
             retry.backoff_base={}\nretry.backoff_cap={}\nconfig={{{}}}\nallowed_hosts=[{}]\n",
            list(&self.types),
            ms(self.timeout),
            num(self.memory),
            num(self.max_concurrency.map(u64::from)),
            num(self.retry.max_attempts.map(u64::from)),
            ms(self.retry.backoff_base),
            ms(self.retry.backoff_cap),
            config.join(","),
            list(&self.allowed_hosts),
        );
        // Secrets count by name and source, never by value: a version is shown to anyone.
        if !self.secrets.is_empty() {
            let secrets: Vec<String> = self
                .secrets
                .iter()
                .map(|(k, v)| format!("{}={}", text(k), text(&v.to_string())))
                .collect();
            out.push_str(&format!("secrets={{{}}}\n", secrets.join(",")));
        }
        if self.http != HttpLimitsOverride::default() {
            let h = &self.http;
            out.push_str(&format!(
                "http.max_requests={}\nhttp.max_response_bytes={}\nhttp.connect_timeout={}\n\
                 http.first_byte_timeout={}\nhttp.idle_timeout={}\nhttp.max_concurrent={}\n",
                num(h.max_requests.map(u64::from)),
                num(h.max_response_bytes),
                ms(h.connect_timeout),
                ms(h.first_byte_timeout),
                ms(h.idle_timeout),
                num(h.max_concurrent.map(u64::from)),
            ));
        }
        if let Some(r) = self.flow.rate {
            out.push_str(&format!("rate_limit={}\n", r.encode()));
        }
        if let Some(c) = self.flow.concurrency {
            out.push_str(&format!("global_concurrency={c}\n"));
        }
        if !self.schedules.is_empty() {
            let json = serde_json::to_string(&self.schedules).unwrap_or_default();
            out.push_str(&format!("schedules={json}\n"));
        }
        if self.instances != Instances::default() {
            out.push_str(&format!("instances={}\n", self.instances.as_str()));
        }
        Some(out)
    }

    /// Parse a manifest. The error is the message only (no file name): the caller wraps it.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut m = Manifest::default();
        for (key, value) in &table {
            match key.as_str() {
                "types" => m.types = parse_types(value)?,
                "timeout" => m.timeout = Some(parse_duration("timeout", value)?),
                "memory" => m.memory = Some(parse_memory(value)?),
                "max_concurrency" => {
                    m.max_concurrency = Some(parse_count("max_concurrency", value)?)
                }
                "allowed_hosts" => {
                    m.allowed_hosts = parse_string_list("allowed_hosts", value)?;
                    AllowList::parse(&m.allowed_hosts)?;
                }
                "retry" => m.retry = parse_retry(value)?,
                "config" => m.config = parse_config(value)?,
                "secrets" => m.secrets = parse_secrets(value)?,
                "http" => m.http = parse_http(value)?,
                "rate_limit" => {
                    let text = value.as_str().ok_or_else(|| {
                        format!(
                            "`rate_limit` must be a string such as \"100/1m\" (got {})",
                            shown(value)
                        )
                    })?;
                    m.flow.rate = Some(
                        text.parse()
                            .map_err(|e: String| format!("`rate_limit`: {e}"))?,
                    );
                }
                "schedules" => m.schedules = parse_schedules(value)?,
                "global_concurrency" => {
                    let n = parse_count("global_concurrency", value)?;
                    crate::storage::flow::validate_concurrency(n)
                        .map_err(|e| format!("`global_concurrency`: {e}"))?;
                    m.flow.concurrency = Some(n);
                }
                "instances" => m.instances = parse_instances(value)?,
                other => return Err(unknown_key(other, TOP_KEYS)),
            }
        }
        Ok(m)
    }
}

const TOP_KEYS: &[&str] = &[
    "types",
    "timeout",
    "memory",
    "max_concurrency",
    "allowed_hosts",
    "retry",
    "config",
    "secrets",
    "http",
    "rate_limit",
    "global_concurrency",
    "schedules",
    "instances",
];
const SCHEDULE_KEYS: &[&str] = &[
    "name",
    "cron",
    "timezone",
    "type",
    "payload",
    "priority",
    "max_attempts",
    "timeout",
    "missed",
];
const RETRY_KEYS: &[&str] = &["max_attempts", "backoff_base", "backoff_cap"];
const HTTP_KEYS: &[&str] = &[
    "max_requests",
    "max_response_bytes",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "max_concurrent",
];

fn unknown_key(key: &str, known: &[&str]) -> String {
    let known: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    format!("unknown key `{key}` (expected one of {})", known.join(", "))
}

fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let msg = e.message().trim().replace('\n', " ");
    match line {
        Some(line) => format!("invalid TOML at line {line}: {msg}"),
        None => format!("invalid TOML: {msg}"),
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn parse_types(value: &Value) -> Result<Vec<String>, String> {
    let types = parse_string_list("types", value)?;
    if types.is_empty() {
        return Err(
            "`types` must list at least one job type (or be left out to use the plugin's name)"
                .into(),
        );
    }
    for t in &types {
        // The rule every enqueue applies: a type no job can have would route nothing.
        crate::job::validate_job_type(t).map_err(|e| format!("`types`: {e}"))?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &types {
        if !seen.insert(t) {
            return Err(format!("`types` lists `{t}` twice"));
        }
    }
    Ok(types)
}

fn parse_string_list(key: &str, value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "`{key}` must be a list of strings (got {})",
            shown(value)
        ));
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "`{key}` must be a list of strings (got {})",
                shown(other)
            )),
        })
        .collect()
}

/// "30s", "500ms", "5m", "1h 30m"; zero is refused.
pub fn parse_duration(key: &str, value: &Value) -> Result<Duration, String> {
    let bad = || {
        format!(
            "`{key}` must be a duration such as \"30s\" or \"500ms\" (got {})",
            shown(value)
        )
    };
    let Value::String(s) = value else {
        return Err(bad());
    };
    let d = humantime::parse_duration(s.trim()).map_err(|_| bad())?;
    if d.is_zero() {
        return Err(format!("`{key}` must be longer than zero (got {s:?})"));
    }
    Ok(d)
}

/// `instances = "fresh"` or `"reuse"`.
fn parse_instances(value: &Value) -> Result<Instances, String> {
    match value.as_str() {
        Some("fresh") => Ok(Instances::Fresh),
        Some("reuse") => Ok(Instances::Reuse),
        _ => Err(format!(
            "`instances` must be \"fresh\" (a new instance per job, the default) or \"reuse\" \
             (one instance serves many jobs in turn) (got {})",
            shown(value)
        )),
    }
}

fn parse_count(key: &str, value: &Value) -> Result<u32, String> {
    match value {
        Value::Integer(n) if *n >= 1 && *n <= u32::MAX as i64 => Ok(*n as u32),
        other => Err(format!(
            "`{key}` must be a whole number of at least 1 (got {})",
            shown(other)
        )),
    }
}

/// A size such as "10MiB" or a whole number of bytes, at least 1.
fn parse_bytes(key: &str, value: &Value) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{key}` must be a size such as \"10MiB\" or a number of bytes (got {})",
            shown(value)
        )
    };
    match value {
        Value::Integer(n) if *n > 0 => Ok(*n as u64),
        Value::String(s) => parse_size(s).filter(|n| *n > 0).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// "64MiB", "512KiB", "1GiB", "64MB" (decimal), or an integer number of bytes.
fn parse_memory(value: &Value) -> Result<u64, String> {
    let bad = || {
        format!(
            "`memory` must be a size such as \"64MiB\" (got {})",
            shown(value)
        )
    };
    let bytes = match value {
        Value::Integer(n) if *n > 0 => *n as u64,
        Value::String(s) => parse_size(s).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if bytes < (1 << 20) {
        return Err(format!(
            "`memory` must be at least 1MiB (got {})",
            shown(value)
        ));
    }
    if bytes > MAX_MEMORY {
        return Err(format!(
            "`memory` must be at most 4GiB (got {})",
            shown(value)
        ));
    }
    Ok(bytes)
}

fn parse_size(s: &str) -> Option<u64> {
    crate::units::parse_size(s).ok()
}

fn parse_retry(value: &Value) -> Result<RetryPolicy, String> {
    let Value::Table(t) = value else {
        return Err(format!(
            "`retry` must be a table such as `[retry]` (got {})",
            shown(value)
        ));
    };
    let mut r = RetryPolicy::default();
    for (key, v) in t {
        match key.as_str() {
            "max_attempts" => r.max_attempts = Some(parse_count("retry.max_attempts", v)?),
            "backoff_base" => r.backoff_base = Some(parse_duration("retry.backoff_base", v)?),
            "backoff_cap" => r.backoff_cap = Some(parse_duration("retry.backoff_cap", v)?),
            other => return Err(unknown_key(&format!("retry.{other}"), RETRY_KEYS)),
        }
    }
    if let (Some(base), Some(cap)) = (r.backoff_base, r.backoff_cap)
        && cap < base
    {
        return Err("`retry.backoff_cap` must not be shorter than `retry.backoff_base`".into());
    }
    Ok(r)
}

fn parse_secrets(value: &Value) -> Result<BTreeMap<String, SecretSource>, String> {
    let Value::Table(t) = value else {
        return Err(format!(
            "`secrets` must be a table such as `[secrets]` (got {})",
            shown(value)
        ));
    };
    t.iter()
        .map(|(k, v)| {
            if k.is_empty() {
                return Err("`secrets` has an empty name".to_string());
            }
            let Value::String(s) = v else {
                return Err(format!(
                    "`secrets.{k}` must be a string such as \"env:VAR\" or \"file:/run/secrets/{k}\" (got {})",
                    shown(v)
                ));
            };
            let source = SecretSource::parse(s).map_err(|e| format!("`secrets.{k}`: {e}"))?;
            Ok((k.clone(), source))
        })
        .collect()
}

/// `[[schedules]]`: each a table with `name` and `cron`, and optionally `timezone`, `type`,
/// `payload` (a table), `priority`, `max_attempts`, `timeout` and `missed`.
fn parse_schedules(value: &Value) -> Result<Vec<crate::storage::flow::Schedule>, String> {
    use crate::storage::flow::{Missed, Schedule};
    let Value::Array(items) = value else {
        return Err(format!(
            "`schedules` must be a list of tables, written `[[schedules]]` (got {})",
            shown(value)
        ));
    };
    let mut out: Vec<Schedule> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Table(t) = item else {
            return Err(format!(
                "`schedules[{i}]` must be a table (got {})",
                shown(item)
            ));
        };
        let text = |key: &str| -> Result<Option<String>, String> {
            match t.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!(
                    "`schedules[{i}].{key}` must be a string (got {})",
                    shown(other)
                )),
            }
        };
        for key in t.keys() {
            if !SCHEDULE_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "`schedules[{i}]`: {}",
                    unknown_key(key, SCHEDULE_KEYS)
                ));
            }
        }
        let name = text("name")?.ok_or_else(|| format!("`schedules[{i}]` needs a `name`"))?;
        crate::storage::flow::validate_schedule_name(&name)
            .map_err(|e| format!("`schedules[{i}].name`: {e}"))?;
        if out.iter().any(|s| s.name == name) {
            return Err(format!("`schedules[{i}]`: the name `{name}` is used twice"));
        }
        let cron = text("cron")?.ok_or_else(|| {
            format!("`schedules[{i}]` needs a `cron` expression, e.g. cron = \"*/15 * * * *\"")
        })?;
        let timezone = text("timezone")?.unwrap_or_else(|| "UTC".into());
        crate::cron::parse(&cron, &timezone).map_err(|e| format!("`schedules[{i}]`: {e}"))?;
        let job_type = text("type")?.unwrap_or_default();
        if !job_type.is_empty() {
            crate::job::validate_job_type(&job_type)
                .map_err(|e| format!("`schedules[{i}].type`: {e}"))?;
        }
        let payload = match t.get("payload") {
            None => serde_json::json!({}),
            Some(v @ Value::Table(_)) => serde_json::to_value(v)
                .map_err(|e| format!("`schedules[{i}].payload` cannot be JSON: {e}"))?,
            Some(other) => {
                return Err(format!(
                    "`schedules[{i}].payload` must be a table, e.g. payload = {{ full = true }} \
                     (got {})",
                    shown(other)
                ));
            }
        };
        let priority = match t.get("priority") {
            None => None,
            Some(v) => {
                let p = parse_count(&format!("schedules[{i}].priority"), v)?;
                let p = u8::try_from(p).unwrap_or(u8::MAX);
                crate::job::validate_priority(p)
                    .map_err(|e| format!("`schedules[{i}].priority`: {e}"))?;
                Some(p)
            }
        };
        let max_attempts = t
            .get("max_attempts")
            .map(|v| parse_count(&format!("schedules[{i}].max_attempts"), v))
            .transpose()?;
        let timeout_ms = t
            .get("timeout")
            .map(|v| parse_duration(&format!("schedules[{i}].timeout"), v))
            .transpose()?
            .map(|d| d.as_millis() as u64);
        let missed = match text("missed")?.as_deref() {
            None | Some("run_once") => Missed::RunOnce,
            Some("skip") => Missed::Skip,
            Some(other) => {
                return Err(format!(
                    "`schedules[{i}].missed` must be \"run_once\" or \"skip\" (got {other:?})"
                ));
            }
        };
        out.push(Schedule {
            name,
            cron,
            timezone,
            job_type,
            payload,
            priority,
            max_attempts,
            timeout_ms,
            missed,
            paused: false,
            plugin: None,
        });
    }
    Ok(out)
}

fn parse_http(value: &Value) -> Result<HttpLimitsOverride, String> {
    let Value::Table(t) = value else {
        return Err(format!(
            "`http` must be a table such as `[http]` (got {})",
            shown(value)
        ));
    };
    let mut h = HttpLimitsOverride::default();
    for (key, v) in t {
        let path = format!("http.{key}");
        match key.as_str() {
            "max_requests" => h.max_requests = Some(parse_count(&path, v)?),
            "max_concurrent" => h.max_concurrent = Some(parse_count(&path, v)?),
            "max_response_bytes" => h.max_response_bytes = Some(parse_bytes(&path, v)?),
            "connect_timeout" => h.connect_timeout = Some(parse_duration(&path, v)?),
            "first_byte_timeout" => h.first_byte_timeout = Some(parse_duration(&path, v)?),
            "idle_timeout" => h.idle_timeout = Some(parse_duration(&path, v)?),
            other => return Err(unknown_key(&format!("http.{other}"), HTTP_KEYS)),
        }
    }
    Ok(h)
}

fn parse_config(value: &Value) -> Result<BTreeMap<String, String>, String> {
    let Value::Table(t) = value else {
        return Err(format!(
            "`config` must be a table such as `[config]` (got {})",
            shown(value)
        ));
    };
    t.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(format!(
                "`config.{k}` must be a string (got {}); quote it, e.g. {k} = \"{}\"",
                shown(other),
                other.to_string().trim_matches('"')
            )),
        })
        .collect()
}

/// The settings of a manifest as the API shows them (`GET /api/v1/plugins`): durations and
/// sizes as text, and only what is set. The manifest holds no secrets (0.1 has none), so every
/// value may be shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManifestView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_cap: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Instances::is_fresh")]
    pub instances: Instances,
}

impl Manifest {
    pub fn view(&self) -> ManifestView {
        let show = |d: Option<Duration>| d.map(crate::units::show);
        ManifestView {
            timeout: show(self.timeout),
            memory_bytes: self.memory,
            max_concurrency: self.max_concurrency,
            max_attempts: self.retry.max_attempts,
            backoff_base: show(self.retry.backoff_base),
            backoff_cap: show(self.retry.backoff_cap),
            config: self.config.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            rate_limit: self.flow.rate.map(|r| r.to_string()),
            global_concurrency: self.flow.concurrency,
            instances: self.instances,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_manifest_uses_defaults() {
        let m = Manifest::parse("").unwrap();
        assert_eq!(m, Manifest::default());
        assert_eq!(m.types_or("echo"), vec!["echo".to_string()]);
    }

    #[test]
    fn full_manifest_parses_every_key() {
        let m = Manifest::parse(
            r#"
            types = ["resize", "thumbnail"]
            timeout = "2s"
            memory = "32MiB"
            max_concurrency = 4
            allowed_hosts = []
            [retry]
            max_attempts = 3
            backoff_base = "500ms"
            backoff_cap = "1m"
            [config]
            greeting = "hi"
            [secrets]
            api_key = "env:API_KEY"
            [http]
            max_requests = 5
            max_response_bytes = "1MiB"
            idle_timeout = "2s"
            "#,
        )
        .unwrap();
        assert_eq!(m.secrets["api_key"], SecretSource::Env("API_KEY".into()));
        assert_eq!(m.http.max_requests, Some(5));
        assert_eq!(m.http.max_response_bytes, Some(1 << 20));
        assert_eq!(m.http.idle_timeout, Some(Duration::from_secs(2)));
        assert_eq!(m.types, vec!["resize", "thumbnail"]);
        assert_eq!(m.timeout, Some(Duration::from_secs(2)));
        assert_eq!(m.memory, Some(32 << 20));
        assert_eq!(m.max_concurrency, Some(4));
        assert_eq!(m.retry.max_attempts, Some(3));
        assert_eq!(m.retry.backoff_base, Some(Duration::from_millis(500)));
        assert_eq!(m.retry.backoff_cap, Some(Duration::from_secs(60)));
        assert_eq!(m.config.get("greeting").map(String::as_str), Some("hi"));
    }

    #[test]
    fn instances_are_fresh_unless_reuse_is_asked_for() {
        assert_eq!(Manifest::parse("").unwrap().instances, Instances::Fresh);
        let m = Manifest::parse("instances = \"reuse\"").unwrap();
        assert_eq!(m.instances, Instances::Reuse);
        // Part of the version: switching it makes a new plugin version.
        assert!(m.canonical().unwrap().ends_with("instances=reuse\n"));
        let fresh = Manifest::parse("instances = \"fresh\"").unwrap();
        assert_eq!(fresh.canonical(), None);
        let e = Manifest::parse("instances = \"pooled\"").unwrap_err();
        assert!(
            e.starts_with("`instances` must be \"fresh\"") && e.contains("\"pooled\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Manifest::parse("timeout = \"1s\"\ncolour = \"red\"").unwrap_err();
        assert!(e.contains("unknown key `colour`"), "{e}");
        let e = Manifest::parse("[retry]\nattempts = 3").unwrap_err();
        assert!(e.contains("unknown key `retry.attempts`"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Manifest::parse("timeout = \"soon\"").unwrap_err();
        assert!(e.starts_with("`timeout` must be a duration"), "{e}");
        let e = Manifest::parse("timeout = 30").unwrap_err();
        assert!(e.starts_with("`timeout` must be a duration"), "{e}");
        let e = Manifest::parse("memory = \"lots\"").unwrap_err();
        assert!(e.starts_with("`memory` must be a size"), "{e}");
        let e = Manifest::parse("memory = \"8GiB\"").unwrap_err();
        assert!(e.contains("at most 4GiB"), "{e}");
        let e = Manifest::parse("[retry]\nbackoff_cap = \"x\"").unwrap_err();
        assert!(e.starts_with("`retry.backoff_cap`"), "{e}");
        let m = Manifest::parse("rate_limit = \"50/1s\"\nglobal_concurrency = 3").unwrap();
        assert_eq!(m.flow.rate.map(|r| r.count), Some(50));
        assert_eq!(m.flow.concurrency, Some(3));
        let e = Manifest::parse("rate_limit = \"50 per second\"").unwrap_err();
        assert!(e.starts_with("`rate_limit`"), "{e}");
        let e = Manifest::parse("rate_limit = 5").unwrap_err();
        assert!(e.contains("\"100/1m\""), "{e}");
        let m = Manifest::parse(
            "[[schedules]]\nname = \"sync\"\ncron = \"*/15 * * * *\"\npayload = { full = true }\n\
             missed = \"skip\"",
        )
        .unwrap();
        assert_eq!(m.schedules.len(), 1);
        assert_eq!(m.schedules[0].payload, serde_json::json!({"full": true}));
        assert_eq!(m.schedules[0].missed, crate::storage::flow::Missed::Skip);
        let e = Manifest::parse("[[schedules]]\nname = \"s\"\ncron = \"* * *\"").unwrap_err();
        assert!(e.contains("has 3 fields"), "{e}");
        let e = Manifest::parse("[[schedules]]\nname = \"s\"\ncron = \"* * * * *\"\nevery = 1")
            .unwrap_err();
        assert!(e.contains("unknown key `every`"), "{e}");
        let e = Manifest::parse("max_concurrency = 0").unwrap_err();
        assert!(e.starts_with("`max_concurrency`"), "{e}");
        let e = Manifest::parse("types = [\"a b\"]").unwrap_err();
        assert!(e.starts_with("`types`: invalid job type `a b`"), "{e}");
        let e = Manifest::parse("[config]\nsize = 3").unwrap_err();
        assert!(e.starts_with("`config.size` must be a string"), "{e}");
        let e = Manifest::parse("allowed_hosts = [\"example.com\"]").unwrap_err();
        assert!(e.contains("has no scheme"), "{e}");
        let e = Manifest::parse("[secrets]\nkey = \"vault:x\"").unwrap_err();
        assert!(e.starts_with("`secrets.key`:"), "{e}");
        let e = Manifest::parse("[http]\nmax_requests = 0").unwrap_err();
        assert!(e.starts_with("`http.max_requests`"), "{e}");
        let e = Manifest::parse("[http]\nretries = 1").unwrap_err();
        assert!(e.contains("unknown key `http.retries`"), "{e}");
    }

    #[test]
    fn syntax_errors_give_a_line() {
        let e = Manifest::parse("types = [\"a\"]\ntimeout = ").unwrap_err();
        assert!(e.starts_with("invalid TOML at line 2"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn canonical_text_ignores_layout_and_tells_settings_apart() {
        assert_eq!(
            Manifest::parse("# nothing set\n").unwrap().canonical(),
            None
        );
        let a = Manifest::parse("timeout = \"2s\"\n[config]\nb = \"2\"\na = \"1\"\n").unwrap();
        let b = Manifest::parse(
            "# tuned\ntimeout = \"2000ms\"\n[config]\na = \"1\" # first\nb = \"2\"",
        )
        .unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c = Manifest::parse("timeout = \"2s\"\n[config]\na = \"1\"\nb = \"3\"\n").unwrap();
        assert_ne!(a.canonical(), c.canonical());
        // A value cannot pass itself off as another key.
        let d = Manifest::parse("[config]\na = \"1\\\",b=\\\"2\"\n").unwrap();
        let e = Manifest::parse("[config]\na = \"1\"\nb = \"2\"\n").unwrap();
        assert_ne!(d.canonical(), e.canonical());
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("64 MiB"), Some(64 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("10 parsecs"), None);
    }
}
