//! `http-probe` (test fixture, contract 0.2.0): GETs `url` `n` times, one after another, and
//! returns how many answered 2xx. The runtime benchmark times it against the same requests
//! made by a native HTTP client, to measure what the host adds per outbound request.
//!
//! Payload: `{"url": "http://127.0.0.1:PORT/", "n": 100}`; result `{"ok": n}`.

use serde::{Deserialize, Serialize};
use spool_sdk::{Error, Job, http};

#[derive(Deserialize)]
struct Payload {
    url: String,
    n: u32,
}

#[derive(Serialize)]
struct Probed {
    ok: u32,
}

fn handle(job: Job) -> Result<Probed, Error> {
    let Payload { url, n } = job.payload()?;
    let mut ok = 0;
    for _ in 0..n {
        let response = http::get(url.as_str()).send()?;
        if (200..300).contains(&response.status()) {
            ok += 1;
        }
    }
    Ok(Probed { ok })
}

spool_sdk::export_handler!(handle);
