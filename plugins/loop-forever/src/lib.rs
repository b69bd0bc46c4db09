//! `loop-forever` (test fixture): spins forever without calling the host, so only the
//! runtime's epoch timeout can stop it (its manifest sets `timeout = "2s"`).

use spool_sdk::{Error, Job};

fn handle(_job: Job) -> Result<(), Error> {
    let mut spins: u64 = 0;
    loop {
        // black_box keeps the optimiser from reasoning about the loop; it stays a real spin.
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}

spool_sdk::export_handler!(handle);
