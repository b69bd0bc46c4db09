//! `version` (test fixture): returns `{"version": "<v>"}`, where `<v>` is the manifest config
//! value `version` (default `v1`). Hot-reload tests change `version.toml` (or install a build
//! with a different manifest) and watch the answer change. No manifest is installed by default.

use serde::Serialize;
use spool_sdk::{Error, Job, config};

#[derive(Serialize)]
struct Version {
    version: String,
}

fn handle(_job: Job) -> Result<Version, Error> {
    Ok(Version {
        version: config::get_or("version", "v1"),
    })
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing;

    #[test]
    fn reports_the_configured_version_or_v1() {
        let host = testing::FakeHost::install();
        assert_eq!(
            testing::call(handle, Job::new("version", "{}")).unwrap(),
            r#"{"version":"v1"}"#
        );
        host.set_config("version", "v2");
        assert_eq!(
            testing::call(handle, Job::new("version", "{}")).unwrap(),
            r#"{"version":"v2"}"#
        );
    }
}
