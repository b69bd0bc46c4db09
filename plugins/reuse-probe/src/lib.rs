//! `reuse-probe` (test fixture): returns how many jobs its instance has served, counting this
//! one, so a test can see whether the runtime kept the instance. Its manifest asks for
//! `instances = "reuse"`.
//!
//! Payload (all optional): `{"panic": false, "spin": false, "keep_mib": 0, "fail": false,
//! "stderr": null, "leave_request": null}`.
//! - `panic`: panics (a trap: the instance must be discarded).
//! - `spin`: loops until the runtime's timeout stops it (the instance must be discarded).
//! - `keep_mib`: allocates that many MiB and keeps them in a global, so the instance's memory
//!   stays grown after the job.
//! - `fail`: returns a permanent failure (the instance may be kept).
//! - `stderr`: writes that line to stderr first.
//! - `leave_request`: `"HOST:PORT"`: sends a GET to `http://HOST:PORT/` and returns without
//!   waiting for the answer, leaving the request open (the instance must be discarded).
//!
//! Result: `{"served": n, "kept_mib": m}`; it logs `job N of this instance`.

use serde::{Deserialize, Serialize};
use spool_sdk::{Error, Job, log};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

static SERVED: AtomicU32 = AtomicU32::new(0);
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[derive(Deserialize, Default)]
struct Payload {
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    spin: bool,
    #[serde(default)]
    keep_mib: u32,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    stderr: Option<String>,
    #[serde(default)]
    leave_request: Option<String>,
}

#[derive(Serialize)]
struct Served {
    served: u32,
    kept_mib: usize,
}

fn handle(job: Job) -> Result<Served, Error> {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    let payload: Payload = job.payload().unwrap_or_default();
    log::info!("job {served} of this instance");
    if let Some(line) = &payload.stderr {
        eprintln!("{line}");
    }
    if let Some(authority) = &payload.leave_request {
        leave_request_open(authority)?;
    }
    if payload.panic {
        panic!("reuse-probe: asked to panic on job {served}");
    }
    if payload.spin {
        let mut spins: u64 = 0;
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..payload.keep_mib {
        kept.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
    if payload.fail {
        return Err(Error::fail(format!(
            "reuse-probe: asked to fail on job {served}"
        )));
    }
    Ok(Served {
        served,
        kept_mib: kept.len(),
    })
}

/// Sends `GET http://AUTHORITY/` and forgets the pending response: its handle stays in the
/// host's table after the job.
fn leave_request_open(authority: &str) -> Result<(), Error> {
    use wasip2::http::{outgoing_handler, types};
    let request = types::OutgoingRequest::new(types::Fields::new());
    let refused = |what: &str| Error::fail(format!("reuse-probe: cannot set the {what}"));
    request
        .set_scheme(Some(&types::Scheme::Http))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some("/"))
        .map_err(|()| refused("path"))?;
    let pending = outgoing_handler::handle(request, None)
        .map_err(|e| Error::fail(format!("reuse-probe: the request was refused: {e:?}")))?;
    std::mem::forget(pending);
    Ok(())
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_jobs_and_keeps_memory() {
        let _host = spool_sdk::testing::FakeHost::install();
        let first = spool_sdk::testing::call(handle, Job::new("reuse-probe", "{}")).unwrap();
        assert!(first.contains("\"kept_mib\":0"), "{first}");
        let second =
            spool_sdk::testing::call(handle, Job::new("reuse-probe", r#"{"keep_mib": 1}"#))
                .unwrap();
        assert!(second.contains("\"kept_mib\":1"), "{second}");
    }
}
