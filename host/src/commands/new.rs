//! `spool new NAME --lang rust|js|python|c [--dir PATH]`: creates a plugin project outside
//! the Spool workspace that builds, with one command (`./build.sh`), into a component the
//! daemon loads, with a README saying what to install, how to build, test with `spool exec`
//! and deploy.
//!
//! The templates live in `host/templates/` and are embedded in the binary, with the WIT and,
//! for C, the committed wit-bindgen bindings and the WASI preview1 adapter, so the
//! command works on a machine with no Spool checkout, except for Rust: the SDK is not on
//! crates.io, so a Rust project depends on it by path, on the checkout this binary was built
//! from (or `--sdk`). Every project holds the same example handler (a greeting that counts
//! with the cache and reads `greeting` from its manifest), so one test drives all four.
//!
//! Contracts: Rust (the SDK's default features), JavaScript and Python projects target
//! `spool:plugin/handler@0.2.0` (outbound HTTP and secrets); C stays on the released 0.1.0,
//! whose bindings are generated once and shipped (no HTTP client for C plugins yet).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The componentize-py version the Python template's README and build script name.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The contract of C projects (their bindings in `plugins/c-mdstats/gen/` are for it).
const WIT_0_1: (&str, &str) = (
    "wit/spool-plugin@0.1.0/plugin.wit",
    include_str!("../../../wit/spool-plugin@0.1.0/plugin.wit"),
);

/// The contract of JavaScript and Python projects: the world and the WASI 0.2.12 packages it
/// uses (componentize-js and componentize-py resolve them from `deps/`).
const WIT_0_2: &[(&str, &str)] = &[
    (
        "wit/spool-plugin@0.2.0/plugin.wit",
        include_str!("../../../wit/spool-plugin@0.2.0/plugin.wit"),
    ),
    (
        "wit/spool-plugin@0.2.0/deps/cli/package.wit",
        include_str!("../../../wit/spool-plugin@0.2.0/deps/cli/package.wit"),
    ),
    (
        "wit/spool-plugin@0.2.0/deps/clocks/package.wit",
        include_str!("../../../wit/spool-plugin@0.2.0/deps/clocks/package.wit"),
    ),
    (
        "wit/spool-plugin@0.2.0/deps/filesystem/package.wit",
        include_str!("../../../wit/spool-plugin@0.2.0/deps/filesystem/package.wit"),
    ),
    (
        "wit/spool-plugin@0.2.0/deps/http/package.wit",
        include_str!("../../../wit/spool-plugin@0.2.0/deps/http/package.wit"),
    ),
    (
        "wit/spool-plugin@0.2.0/deps/io/package.wit",
        include_str!("../../../wit/spool-plugin@0.2.0/deps/io/package.wit"),
    ),
    (
        "wit/spool-plugin@0.2.0/deps/random/package.wit",
        include_str!("../../../wit/spool-plugin@0.2.0/deps/random/package.wit"),
    ),
    (
        "wit/spool-plugin@0.2.0/deps/sockets/package.wit",
        include_str!("../../../wit/spool-plugin@0.2.0/deps/sockets/package.wit"),
    ),
];

/// The contract version a project in `lang` targets.
fn contract(lang: Lang) -> &'static str {
    match lang {
        Lang::C => "0.1.0",
        Lang::Rust | Lang::Js | Lang::Python => "0.2.0",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    #[value(alias = "javascript")]
    Js,
    #[value(alias = "py")]
    Python,
    C,
}

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name, also its file name (NAME.wasm) and job type: lowercase letters,
    /// digits and `-`, starting with a letter
    pub name: String,
    /// The plugin's language
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to create the project (default: ./NAME); it must not exist, or be empty
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rust only: the Spool SDK folder (`sdk/` of a Spool checkout) to depend on by path
    /// (default: the checkout this `spool` was built from)
    #[arg(long, env = "SPOOL_SDK")]
    pub sdk: Option<PathBuf>,
}

/// One file of a new project, relative to its folder.
#[derive(Debug)]
pub struct ProjectFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub executable: bool,
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    validate_name(&args.name, args.lang)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let sdk = match args.lang {
        Lang::Rust => Some(find_sdk(args.sdk.as_deref())?),
        _ => None,
    };
    let files = project_files(&args.name, args.lang, sdk.as_deref());
    write_project(&dir, &files)?;

    let shown = dir.display();
    println!(
        "created a {} plugin `{}` in {shown}",
        lang_label(args.lang),
        args.name
    );
    println!();
    println!("  cd {shown}");
    println!("  ./build.sh                       # see README.md for what to install");
    println!("  spool exec {}.wasm '{{\"name\": \"ada\"}}'", args.name);
    println!(
        "  cp {0}.wasm {0}.toml PLUGINS_DIR/   # deploy: the daemon loads it",
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

fn lang_label(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        Lang::Python => "Python",
        Lang::C => "C",
    }
}

/// Names that cargo refuses as package names (keywords and built-in crates).
const RUST_RESERVED: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "alloc",
    "core",
    "std",
    "test",
    "proc-macro",
];

/// A plugin name is a file name, a job type and a package name in every language.
pub fn validate_name(name: &str, lang: Lang) -> anyhow::Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !valid {
        bail!(
            "`{name}` is not a valid plugin name: use 1-64 lowercase letters, digits and single \
             `-`, starting with a letter (for example `resize-image`)"
        );
    }
    if lang == Lang::Rust && RUST_RESERVED.contains(&name) {
        bail!("`{name}` cannot be the name of a Rust plugin: cargo reserves it; pick another name");
    }
    Ok(())
}

/// The SDK folder: `--sdk`/`SPOOL_SDK`, else the checkout this binary was built from.
fn find_sdk(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (candidate, hint) = match given {
        Some(path) => (path.to_path_buf(), "check the `--sdk` path (or SPOOL_SDK)"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"),
            "this `spool` was built from a checkout that is no longer there; pass \
             `--sdk PATH` with the `sdk` folder of a Spool checkout",
        ),
    };
    let manifest = candidate.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "cannot find the Spool SDK at `{}`: {hint}",
            candidate.display()
        )
    })?;
    if !text.contains("name = \"spool-sdk\"") {
        bail!(
            "`{}` is not the Spool SDK (its Cargo.toml does not name `spool-sdk`): {hint}",
            candidate.display()
        );
    }
    candidate
        .canonicalize()
        .with_context(|| format!("cannot resolve the SDK path `{}`", candidate.display()))
}

/// Every file of a new project, with the placeholders filled in.
pub fn project_files(name: &str, lang: Lang, sdk: Option<&Path>) -> Vec<ProjectFile> {
    let sdk_path = sdk.map(|p| p.display().to_string()).unwrap_or_default();
    let fill = |template: &str| -> Vec<u8> {
        template
            .replace("{{name}}", name)
            .replace("{{name_snake}}", &name.replace('-', "_"))
            .replace(
                "{{sdk_path_toml}}",
                &toml::Value::String(sdk_path.clone()).to_string(),
            )
            .replace("{{sdk_path}}", &sdk_path)
            .replace("{{componentize_py_version}}", COMPONENTIZE_PY_VERSION)
            .replace("{{contract}}", contract(lang))
            .into_bytes()
    };
    let text = |path: &str, template: &str| ProjectFile {
        path: path.to_owned(),
        contents: fill(template),
        executable: false,
    };
    let script = |template: &str| ProjectFile {
        path: "build.sh".to_owned(),
        contents: fill(template),
        executable: true,
    };
    let verbatim = |path: &str, bytes: &[u8]| ProjectFile {
        path: path.to_owned(),
        contents: bytes.to_vec(),
        executable: false,
    };
    let readme_tail = include_str!("../../templates/common/README-tail.md");
    let readme = |head: &str| text("README.md", &format!("{head}{readme_tail}"));
    let wit_0_2 = || {
        WIT_0_2
            .iter()
            .map(|(path, wit)| verbatim(path, wit.as_bytes()))
    };

    let mut files =
        match lang {
            Lang::Rust => vec![
                readme(include_str!("../../templates/rust/README.md")),
                text(
                    "Cargo.toml",
                    include_str!("../../templates/rust/Cargo.toml"),
                ),
                text("src/lib.rs", include_str!("../../templates/rust/lib.rs")),
                script(include_str!("../../templates/rust/build.sh")),
                text(".gitignore", include_str!("../../templates/rust/gitignore")),
            ],
            Lang::Js => vec![
                readme(include_str!("../../templates/js/README.md")),
                text(
                    "package.json",
                    include_str!("../../templates/js/package.json"),
                ),
                // The example plugin's lock file: same packages, so installs are reproducible.
                ProjectFile {
                    path: "package-lock.json".to_owned(),
                    contents: include_str!("../../../plugins/js-mdstats/package-lock.json")
                        .replace(
                            "\"name\": \"spool-plugin-js-mdstats\"",
                            &format!("\"name\": \"{name}\""),
                        )
                        .into_bytes(),
                    executable: false,
                },
                text("build.mjs", include_str!("../../templates/js/build.mjs")),
                text(
                    "src/plugin.js",
                    include_str!("../../templates/js/plugin.js"),
                ),
                script(include_str!("../../templates/js/build.sh")),
                text(".gitignore", include_str!("../../templates/js/gitignore")),
            ]
            .into_iter()
            .chain(wit_0_2())
            .collect(),
            Lang::Python => vec![
                readme(include_str!("../../templates/python/README.md")),
                text("src/app.py", include_str!("../../templates/python/app.py")),
                // A blocking HTTP client on the generated wasi:http bindings.
                text(
                    "src/spool_http.py",
                    include_str!("../../templates/python/spool_http.py"),
                ),
                script(include_str!("../../templates/python/build.sh")),
                text(
                    ".gitignore",
                    include_str!("../../templates/python/gitignore"),
                ),
            ]
            .into_iter()
            .chain(wit_0_2())
            .collect(),
            Lang::C => vec![
            readme(include_str!("../../templates/c/README.md")),
            text("src/plugin.c", include_str!("../../templates/c/plugin.c")),
            // The C example plugin's JSON helpers and bindings (generated once from the
            // released WIT by plugins/c-mdstats/gen/regenerate.sh).
            verbatim("src/json.c", include_bytes!("../../../plugins/c-mdstats/src/json.c")),
            verbatim("src/json.h", include_bytes!("../../../plugins/c-mdstats/src/json.h")),
            verbatim("gen/handler.c", include_bytes!("../../../plugins/c-mdstats/gen/handler.c")),
            verbatim("gen/handler.h", include_bytes!("../../../plugins/c-mdstats/gen/handler.h")),
            verbatim(
                "gen/handler_component_type.o",
                include_bytes!("../../../plugins/c-mdstats/gen/handler_component_type.o"),
            ),
            verbatim(
                "gen/wasi_snapshot_preview1.reactor.wasm",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            ),
            script(include_str!("../../templates/c/build.sh")),
            text(".gitignore", include_str!("../../templates/c/gitignore")),
            verbatim(WIT_0_1.0, WIT_0_1.1.as_bytes()),
        ],
        };
    // `NAME.toml`: the manifest, named after the plugin.
    files.push(text(
        &format!("{name}.toml"),
        include_str!("../../templates/common/manifest.toml"),
    ));
    files
}

/// Write the files into a hidden sibling folder, then rename it to `dir`: a failure leaves
/// nothing half-made, and an existing non-empty `dir` is never touched.
pub fn write_project(dir: &Path, files: &[ProjectFile]) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "`{}` already exists and is not empty; choose another `--dir` or name",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if dir.exists() => {
            bail!(
                "`{}` already exists and cannot be used ({e}); choose another `--dir`",
                dir.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot check `{}`", dir.display())),
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create the folder `{}`", parent.display()))?;
    let leaf = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("`{}` does not name a folder", dir.display()))?;
    let staging = parent.join(format!(".{leaf}.spool-new-{}", std::process::id()));
    let result = write_files(&staging, files).and_then(|()| {
        // rename(2) replaces an empty directory, so `--dir` may name one made beforehand.
        std::fs::rename(&staging, dir)
            .with_context(|| format!("cannot move the new project into `{}`", dir.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn write_files(root: &Path, files: &[ProjectFile]) -> anyhow::Result<()> {
    for file in files {
        let path = root.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the folder `{}`", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        if file.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make `{}` executable", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Lang; 4] = [Lang::Rust, Lang::Js, Lang::Python, Lang::C];

    #[test]
    fn accepts_plain_names_and_refuses_others() {
        for good in ["hello", "resize-image", "a1", "x-2-y"] {
            validate_name(good, Lang::Rust).unwrap();
        }
        for bad in [
            "",
            "Hello",
            "1abc",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a.b",
            "a/b",
            &"a".repeat(65),
        ] {
            let error = validate_name(bad, Lang::C).unwrap_err().to_string();
            assert!(error.contains("not a valid plugin name"), "{bad}: {error}");
        }
        assert!(validate_name("test", Lang::Rust).is_err());
        validate_name("test", Lang::Python).unwrap();
    }

    #[test]
    fn every_template_is_filled_in() {
        let sdk = Path::new("/opt/spool/sdk");
        for lang in ALL {
            let files = project_files("hello-world", lang, Some(sdk));
            let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            for expected in ["README.md", "build.sh", ".gitignore", "hello-world.toml"] {
                assert!(
                    paths.contains(&expected),
                    "{lang:?} lacks {expected}: {paths:?}"
                );
            }
            let wit_0_1 = paths.contains(&WIT_0_1.0);
            let wit_0_2 = WIT_0_2.iter().all(|(path, _)| paths.contains(path));
            assert_eq!(wit_0_1, lang == Lang::C, "{lang:?}");
            assert_eq!(wit_0_2, matches!(lang, Lang::Js | Lang::Python), "{lang:?}");
            for file in &files {
                if let Ok(text) = std::str::from_utf8(&file.contents) {
                    assert!(
                        !text.contains("{{"),
                        "{lang:?} {} keeps a placeholder",
                        file.path
                    );
                }
            }
            assert!(files.iter().any(|f| f.path == "build.sh" && f.executable));
        }
        let rust = project_files("hello-world", Lang::Rust, Some(sdk));
        let cargo = std::str::from_utf8(
            &rust
                .iter()
                .find(|f| f.path == "Cargo.toml")
                .unwrap()
                .contents,
        )
        .unwrap()
        .to_owned();
        assert!(cargo.contains("name = \"hello-world\""));
        assert!(
            cargo.contains("spool-sdk = { path = \"/opt/spool/sdk\" }"),
            "{cargo}"
        );
        let parsed: toml::Value = toml::from_str(&cargo).unwrap();
        assert!(parsed.get("workspace").is_some());
    }

    #[test]
    fn the_manifest_template_is_a_valid_manifest() {
        let files = project_files("hello", Lang::C, None);
        let toml = files.iter().find(|f| f.path == "hello.toml").unwrap();
        let manifest =
            crate::plugins::Manifest::parse(std::str::from_utf8(&toml.contents).unwrap()).unwrap();
        assert_eq!(manifest.types, ["hello"]);
        assert_eq!(
            manifest.config.get("greeting").map(String::as_str),
            Some("hello")
        );
    }

    #[test]
    fn the_js_lock_file_matches_the_template_package_json() {
        let files = project_files("hello", Lang::Js, None);
        let json = |path: &str| -> serde_json::Value {
            serde_json::from_slice(&files.iter().find(|f| f.path == path).unwrap().contents)
                .unwrap()
        };
        let package = json("package.json");
        let lock = json("package-lock.json");
        assert_eq!(lock["name"], "hello");
        assert_eq!(lock["packages"][""]["name"], "hello");
        assert_eq!(
            lock["packages"][""]["devDependencies"],
            package["devDependencies"]
        );
        assert_eq!(lock["packages"][""]["version"], package["version"]);
    }

    #[test]
    fn writes_a_project_and_refuses_to_overwrite_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/hello");
        write_project(&dir, &project_files("hello", Lang::Python, None)).unwrap();
        assert!(dir.join("src/app.py").is_file());
        assert!(dir.join(WIT_0_2[0].0).is_file());
        assert!(
            dir.join("wit/spool-plugin@0.2.0/deps/http/package.wit")
                .is_file()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("build.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);

        let error = write_project(&dir, &project_files("hello", Lang::C, None)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("already exists and is not empty"),
            "{error}"
        );
        assert!(
            !dir.join("gen").exists(),
            "the existing project was touched"
        );

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write_project(&empty, &project_files("hello", Lang::C, None)).unwrap();
        assert!(
            empty
                .join("gen/wasi_snapshot_preview1.reactor.wasm")
                .is_file()
        );
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn finds_the_sdk_of_this_checkout() {
        let sdk = find_sdk(None).unwrap();
        assert!(sdk.join("Cargo.toml").is_file());
        let error = find_sdk(Some(Path::new("/nonexistent/sdk"))).unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot find the Spool SDK"),
            "{error:#}"
        );
    }
}
