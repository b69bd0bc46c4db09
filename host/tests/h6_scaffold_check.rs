// Temporary compile check for host/src/scaffold.rs until lib.rs declares it (H6; deleted soon).
mod plugins {
    pub use spool_host::plugins::*;
}
#[path = "../src/scaffold.rs"]
mod scaffold;
#[test]
#[ignore]
fn make_projects() {
    for (lang, name) in [(scaffold::Lang::Rust, "hello-rust"), (scaffold::Lang::Js, "hello-js"), (scaffold::Lang::Python, "hello-py"), (scaffold::Lang::C, "hello-c")] {
        let dir = std::path::Path::new("/tmp/h6/scaf").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        scaffold::run(scaffold::NewArgs { name: name.into(), lang, dir: Some(dir), sdk: None }).unwrap();
    }
}
