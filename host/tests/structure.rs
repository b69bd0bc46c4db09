//! The module layering of `host/src`, checked: a module may name (`crate::x`) only modules of
//! a lower layer, so there is no import cycle among the top-level modules and no lower layer
//! reaches into a higher one. docs/architecture.md explains each layer; a new top-level
//! module must be given a layer here and there.
//!
//! Inside a module, children and parents use each other freely (`super::`); the rule is about
//! the modules of `lib.rs`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Lowest first.
const LAYERS: &[&[&str]] = &[
    // Plain data and rules: the job model, text and unit helpers, the background-loop
    // skeleton.
    &["job", "text", "units", "throughput", "service"],
    // The two engines: storage (jobs, events, flow control) and the wasm runtime. Neither
    // knows the other.
    &["storage", "runtime"],
    // Built on storage or the runtime alone.
    &["events", "cron", "metrics"],
    // Plugins: manifests, loading code through the runtime, the registry, the watcher.
    &["plugins"],
    // The daemon's configuration, which names the options of everything below.
    &["config"],
    // The worker pool: claims from storage, runs plugins, settles.
    &["scheduler"],
    // The HTTP API and dashboard.
    &["api"],
    // Wiring a daemon core together.
    &["app"],
    // The commands of the binary.
    &["commands"],
    // Argument parsing and dispatch, and the client commands.
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (line, block and doc comments), so that prose
/// naming a module is not an import.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else if rest.starts_with('"') {
            // A string literal is copied whole, so that `//` inside it is not a comment.
            let body = &rest[1..];
            let mut end = body.len();
            let mut escaped = false;
            for (i, c) in body.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = i;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let stop = (1 + end + 1).min(rest.len());
            out.push_str(&rest[..stop]);
            rest = &rest[stop..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The top-level modules a file names through `crate::`.
fn crate_references(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        // `$crate::` (macros) and `spool_crate::` are not this crate's paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .collect();
    assert!(
        modules.len() > 10,
        "read the modules of lib.rs: {modules:?}"
    );
    let missing: Vec<&&str> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "give these modules a layer in host/tests/structure.rs and docs/architecture.md: {missing:?}"
    );
    for layer in LAYERS {
        for m in *layer {
            assert!(modules.contains(m), "`{m}` is in LAYERS but not in lib.rs");
        }
    }
}

#[test]
fn modules_only_use_lower_layers() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut edges = 0;
    for file in &files {
        let Some(from) = top_module(&src, file) else {
            continue;
        };
        let from_layer = layer_of(&from).unwrap_or_else(|| panic!("`{from}` has no layer"));
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        for to in crate_references(&code) {
            if to == from {
                continue;
            }
            let Some(to_layer) = layer_of(&to) else {
                // A crate-root item (a macro or re-export), not a module.
                continue;
            };
            edges += 1;
            if to_layer >= from_layer {
                violations
                    .entry(format!("{from} -> {to}"))
                    .or_default()
                    .push(file.strip_prefix(&src).unwrap().display().to_string());
            }
        }
    }
    assert!(
        edges > 50,
        "found only {edges} references: the scan is broken"
    );
    let report: Vec<String> = violations
        .iter()
        .map(|(edge, files)| {
            let mut files = files.clone();
            files.dedup();
            format!("{edge} (in {})", files.join(", "))
        })
        .collect();
    assert!(
        report.is_empty(),
        "these references go to the same or a higher layer:\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn the_scanner_reads_paths_not_prose() {
    let code = without_comments(
        "use crate::job::Job; // crate::api in a comment\n\
         /* crate::cli */ let s = \"// not a comment\"; crate::{storage, runtime::X};\n\
         $crate::x::y; my_crate::z;",
    );
    assert_eq!(
        crate_references(&code),
        vec!["job", "storage", "runtime"],
        "{code}"
    );
}
