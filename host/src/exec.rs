//! `spool exec`: one job through one plugin, no queue (being written).

use std::process::ExitCode;

pub async fn run(args: crate::cli::ExecArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`spool exec {}` is not built yet", args.plugin.display())
}
