//! Throwaway certificates for the TLS servers, made with `openssl`, and the settings that make
//! a node speak only TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `openssl` with `args` in `dir`; Err carries its output when it fails.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run `openssl` ({e}): install it (apt install openssl)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`openssl {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes a throwaway CA in `dir` (`{name}.pem`, `{name}.key`); returns the certificate path.
pub fn make_ca(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            &format!("/CN=spool test {name}"),
        ],
    )?;
    Ok(dir.join(cert))
}

/// Makes `{name}.pem` + `{name}.key` in `dir`, signed by the CA `{ca}.pem`/`{ca}.key` there;
/// `server` certificates name 127.0.0.1 and localhost, others are client certificates.
pub fn make_signed_cert(dir: &Path, ca: &str, name: &str, server: bool) -> Result<(), String> {
    let (cert, key, csr, ext) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN=spool test {name}"),
        ],
    )?;
    let usage = if server {
        // clientAuth too: Cluster nodes present it to each other on the TLS bus.
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
    };
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n{usage}"),
    )
    .map_err(|e| format!("cannot write {ext}: {e}"))?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    )
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1/localhost (`server.pem`) in `dir`,
/// and with `client` a client certificate from that CA (`client.pem`/`client.key`) too.
pub(crate) fn make_certs(dir: &Path, client: bool) -> Result<(), String> {
    make_ca(dir, "ca")?;
    make_signed_cert(dir, "ca", "server", true)?;
    if client {
        make_signed_cert(dir, "ca", "client", false)?;
    }
    Ok(())
}

/// The settings (name, value) that make a node listen with TLS on `port` (with `port 0`: only
/// TLS), with the certificates of `make_certs` in `dir`; `client_auth` makes it require a
/// client certificate. As `--name value` flags (`as_flags`) or `name value` config lines.
pub(crate) fn tls_settings(
    dir: &Path,
    port: u16,
    client_auth: bool,
) -> Vec<(&'static str, String)> {
    let file = |f: &str| dir.join(f).display().to_string();
    vec![
        ("tls-port", port.to_string()),
        ("tls-cert-file", file("server.pem")),
        ("tls-key-file", file("server.key")),
        ("tls-ca-cert-file", file("ca.pem")),
        (
            "tls-auth-clients",
            if client_auth { "yes" } else { "no" }.to_owned(),
        ),
    ]
}

/// Settings as command-line flags.
pub(crate) fn as_flags(settings: &[(&str, String)]) -> Vec<String> {
    settings
        .iter()
        .flat_map(|(k, v)| [format!("--{k}"), v.clone()])
        .collect()
}
