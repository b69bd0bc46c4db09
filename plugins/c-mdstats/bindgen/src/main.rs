//! `spool-c-bindgen WIT_DIR OUT_DIR`: writes wit-bindgen's C bindings for the world
//! `spool:plugin/handler@0.1.0` (handler.h, handler.c, handler_component_type.o) into OUT_DIR.
//! Equivalent to `wit-bindgen c WIT_DIR --world handler --out-dir OUT_DIR` (0.63.0).

use anyhow::{Context, bail};
use std::path::PathBuf;
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wit, out] = args.as_slice() else {
        bail!("usage: spool-c-bindgen WIT_DIR OUT_DIR");
    };
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("cannot parse the WIT in `{wit}`"))?;
    let world = resolve.select_world(&[package], Some("handler"))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
