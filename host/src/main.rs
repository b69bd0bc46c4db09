//! The `spool` binary: parse the command line, install tracing, hand over to `cli::run`.

/// mimalloc rather than the system allocator: a job's life is many small allocations on
/// several threads (claim replies, job structs, store set-up, completions), where glibc's
/// malloc spent ~15% of the daemon's CPU in `spool bench` (perf, release build).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    spool_host::cli::main()
}
