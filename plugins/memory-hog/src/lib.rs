//! `memory-hog` (test fixture): allocates 1 MiB chunks, writing to every page so they are
//! really used, until memory runs out (or `max_mib` is reached).
//!
//! Payload (all optional): `{"max_mib": null, "graceful": false}`.
//! - By default an allocation failure aborts the guest the way any Rust program does
//!   (`memory allocation of N bytes failed`, then a trap): the host sees a crash and should
//!   report it as out of memory (its 64 MiB cap).
//! - With `"graceful": true` the chunks are reserved with `try_reserve_exact`, so the guest sees
//!   the failure and returns a retry error naming how much it got.
//! - With `max_mib` it stops after that many MiB and returns `{"allocated_mib": n}`.

use serde::{Deserialize, Serialize};
use spool_sdk::{Error, Job, log};

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    max_mib: Option<u32>,
    #[serde(default)]
    graceful: bool,
}

#[derive(Serialize)]
struct Allocated {
    allocated_mib: u32,
}

fn handle(job: Job) -> Result<Allocated, Error> {
    let payload: Payload = job.payload()?;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut mib: u32 = 0;
    while payload.max_mib.is_none_or(|max| mib < max) {
        let mut chunk = Vec::new();
        if payload.graceful {
            if let Err(e) = chunk.try_reserve_exact(CHUNK) {
                // Free everything first: formatting the message needs a little memory too.
                drop(chunks);
                log::warn!("allocation failed after {mib} MiB: {e}");
                return Err(Error::retry(format!(
                    "memory-hog: out of memory after {mib} MiB: {e}"
                )));
            }
        } else {
            chunk.reserve_exact(CHUNK); // aborts (a trap) when the host refuses to grow memory
        }
        chunk.resize(CHUNK, 0);
        for page in chunk.iter_mut().step_by(PAGE) {
            *page = 1;
        }
        chunks.push(std::hint::black_box(chunk));
        mib += 1;
    }
    log::info!("allocated {mib} MiB");
    Ok(Allocated {
        allocated_mib: std::hint::black_box(&chunks).len() as u32,
    })
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_max_mib() {
        let _host = spool_sdk::testing::FakeHost::install();
        let job = Job::new("memory-hog", r#"{"max_mib": 3}"#);
        assert_eq!(
            spool_sdk::testing::call(handle, job).unwrap(),
            r#"{"allocated_mib":3}"#
        );
    }
}
