//! The `spool` binary: parse the command line, install tracing, hand over to `cli::run`.

fn main() -> std::process::ExitCode {
    spool_host::cli::main()
}
