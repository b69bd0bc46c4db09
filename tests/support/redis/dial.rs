//! How the harness talks to the nodes it started: RESP over plain TCP, or `redis-cli --tls`
//! for TLS-only nodes (this crate has no TLS client of its own).

use super::resp::command_as;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Clone, Default)]
pub(crate) struct Dial {
    /// `AUTH` with this before each command.
    pub(crate) password: Option<String>,
    /// TLS, trusting the CA `ca.pem` in this folder.
    pub(crate) tls_ca_dir: Option<PathBuf>,
}

impl Dial {
    pub(crate) fn plain(password: Option<&str>) -> Dial {
        Dial {
            password: password.map(str::to_owned),
            tls_ca_dir: None,
        }
    }

    pub(crate) fn tls(ca_dir: PathBuf) -> Dial {
        Dial {
            password: None,
            tls_ca_dir: Some(ca_dir),
        }
    }

    /// One command to the node on `port`: its reply as `redis-cli` prints it (`Reply::cli_text`),
    /// or None when the node did not answer or answered an error.
    pub(crate) fn ask(&self, port: u16, args: &[&str]) -> Option<String> {
        if self.tls_ca_dir.is_none() {
            return command_as(port, self.password.as_deref(), args)
                .ok()?
                .cli_text();
        }
        let mut all = vec!["-p".to_owned(), port.to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        self.cli(&all).ok()
    }

    /// `redis-cli ARGS` with this dial's TLS and password options: its stdout, or Err with
    /// everything it printed. Gives up after 60 s (`--cluster create` waits for ever for nodes
    /// that cannot meet).
    pub(crate) fn cli(&self, args: &[String]) -> Result<String, String> {
        let mut cmd = Command::new("timeout");
        cmd.arg("60").arg("redis-cli");
        if let Some(dir) = &self.tls_ca_dir {
            cmd.arg("--tls").arg("--cacert").arg(dir.join("ca.pem"));
        }
        if let Some(pw) = &self.password {
            cmd.args(["--no-auth-warning", "-a", pw]);
        }
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "`redis-cli {}` failed ({}): {stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}
