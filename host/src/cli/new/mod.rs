//! `plughost new`: scaffolds a plugin folder that passes `plughost check` and runs.
//!
//! The scaffold is a small working plugin, not an empty shell: it subscribes
//! to `NAME.in`, greets the `name` of each event on `NAME.out` with
//! `config.greeting`, counts events in `state`, and defines every hook with a
//! comment saying when it runs, so an author edits something that already
//! works. Rendering the files is pure ([`render`], tested inline); [`create`]
//! only decides where the SDK is (for a native crate) and writes them.
//!
//! The templates live with the runtime they are for (modules `lua`, `rhai`
//! and `native`); `common` renders the files every scaffold has
//! (`plugin.yaml`, `README.md`). This module holds the public API: the name
//! check, [`render`], [`create`] and [`summary`].

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::RuntimeKind;

use common::{
    check_command, manifest, readme, shell_quote, test_command, test_events, test_expect,
};

mod common;
mod lua;
mod native;
mod rhai;

/// Why `plughost new` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// NAME is not a valid plugin name.
    #[error(
        "invalid plugin name `{0}`: use 1 to 64 lowercase letters, digits, `_` and `-`, \
         starting with a letter or digit"
    )]
    BadName(String),
    /// NAME is a valid plugin name but cannot name the native plugin's crate.
    #[error("`{name}` cannot name a native plugin, whose name is also its crate's: {reason}")]
    BadCrateName {
        /// The name given.
        name: String,
        /// What cargo would object to.
        reason: &'static str,
    },
    /// The plugin folder (or a file of that name) is already there.
    #[error("{} already exists; choose another name or remove it", .0.display())]
    Exists(PathBuf),
    /// Creating a folder or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// How the native crate depends on `plughost-sdk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkDependency {
    /// By path: relative to the plugin folder (`../../bindings/sdk`) when the
    /// folder is inside a plughost checkout, else the absolute path of the
    /// SDK this `plughost` was built from.
    Path(String),
    /// By version requirement (`0.1`): no SDK was found on this machine.
    /// `plughost-sdk` is not published, so the author must point the line at
    /// a checkout's `bindings/sdk`; the line's comment and
    /// [`summary`] say so.
    Version(String),
}

/// Where the scaffold's manifest finds the JSON Schema of `plugin.yaml`
/// (its first line, `# yaml-language-server: $schema=…`, names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaLink {
    /// `schemas/plugin.schema.json` of the enclosing plughost checkout, by a
    /// path relative to the plugin folder (`../../schemas/plugin.schema.json`).
    Checkout(String),
    /// A copy written beside the manifest, `plugin.schema.json` (what
    /// `plughost schema plugin` prints): the folder is outside a checkout.
    Beside,
}

/// What a scaffold points at, which depends on where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Surroundings {
    /// The native crate's SDK dependency (unused by script plugins).
    pub sdk: SdkDependency,
    /// The manifest's schema.
    pub schema: SchemaLink,
}

/// The file name of the schema copy a scaffold outside a checkout gets.
pub const SCHEMA_COPY: &str = "plugin.schema.json";

/// One file of the scaffold: its path relative to the plugin folder, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative path, `/`-separated.
    pub path: &'static str,
    /// Contents.
    pub text: String,
}

/// Checks that `name` is a plugin name, `[a-z0-9][a-z0-9_-]{0,63}`, and for
/// a native plugin also a name cargo accepts for a library crate.
pub fn validate_name(name: &str, runtime: RuntimeKind) -> Result<(), NewError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = first_ok
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        return Err(NewError::BadName(name.to_owned()));
    }
    if runtime == RuntimeKind::Native {
        let bad = |reason| {
            Err(NewError::BadCrateName {
                name: name.to_owned(),
                reason,
            })
        };
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return bad("a crate name cannot start with a digit");
        }
        if RUST_KEYWORDS.contains(&name) {
            return bad("it is a Rust keyword");
        }
        if BUILTIN_CRATES.contains(&name.replace('-', "_").as_str()) {
            return bad("it is the name of one of Rust's built-in libraries");
        }
    }
    Ok(())
}

/// Names cargo refuses for a library target.
const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Crates every Rust program can see, which a library must not shadow.
const BUILTIN_CRATES: &[&str] = &["alloc", "core", "proc_macro", "std", "test"];
/// The files of a new plugin `name` for `runtime`, in the order they are
/// written. `plugins_dir` is the plugins directory as the user named it,
/// quoted into the README's commands; `around` says where the SDK (native
/// plugins only) and the manifest's schema are.
pub fn render(
    name: &str,
    runtime: RuntimeKind,
    plugins_dir: &Path,
    around: &Surroundings,
) -> Vec<File> {
    let fill = |template: &str| {
        template
            .replace("@name@", name)
            .replace("@Type@", &native::type_name(name))
            .replace("@lib@", &name.replace('-', "_"))
    };
    let readme = readme(name, runtime, plugins_dir, &around.schema);
    let schema_path = match &around.schema {
        SchemaLink::Checkout(path) => path.as_str(),
        SchemaLink::Beside => SCHEMA_COPY,
    };
    let manifest = || file("plugin.yaml", manifest(name, runtime, schema_path));
    let tests = [
        file("tests/events.jsonl", test_events(name)),
        file("tests/expect.jsonl", test_expect(name)),
    ];
    let mut files = match runtime {
        RuntimeKind::Lua => vec![
            manifest(),
            file("main.lua", fill(lua::MAIN_LUA)),
            file("README.md", readme),
        ],
        RuntimeKind::Rhai => vec![
            manifest(),
            file("main.rhai", fill(rhai::MAIN_RHAI)),
            file("README.md", readme),
        ],
        RuntimeKind::Native => {
            let dependency = native::sdk_line(&around.sdk);
            vec![
                manifest(),
                file(
                    "Cargo.toml",
                    fill(native::CARGO_TOML).replace("@dependency@", &dependency),
                ),
                file("src/lib.rs", fill(native::LIB_RS)),
                file(".gitignore", "/target\n".to_owned()),
                file("README.md", readme),
            ]
        }
    };
    if around.schema == SchemaLink::Beside {
        files.push(file(SCHEMA_COPY, crate::cli::schema::PLUGIN.to_owned()));
    }
    files.extend(tests);
    files
}

fn file(path: &'static str, text: String) -> File {
    File { path, text }
}

/// What a scaffold in `folder` (an absolute path) points at: inside a
/// plughost checkout (an ancestor holds `bindings/sdk/Cargo.toml` of
/// `plughost-sdk`), the checkout's SDK and schema by relative paths;
/// elsewhere, the SDK this binary was built from (by absolute path) and a
/// copy of the schema beside the manifest.
pub fn surroundings(folder: &Path) -> Surroundings {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bindings/sdk");
    surroundings_with(folder, built_from.canonicalize().ok().as_deref())
}

/// [`surroundings`], with the SDK the binary was built from given (`None`:
/// it is gone, or the binary was built elsewhere).
fn surroundings_with(folder: &Path, built_from: Option<&Path>) -> Surroundings {
    let is_sdk = |dir: &Path| {
        std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|text| text.contains("name = \"plughost-sdk\""))
    };
    let checkout = folder
        .ancestors()
        .skip(1)
        .find(|dir| is_sdk(&dir.join("bindings/sdk")));
    let Some(root) = checkout else {
        let sdk = match built_from.filter(|dir| is_sdk(dir)) {
            Some(dir) => SdkDependency::Path(dir.display().to_string()),
            None => SdkDependency::Version(sdk_version_req(env!("CARGO_PKG_VERSION"))),
        };
        return Surroundings {
            sdk,
            schema: SchemaLink::Beside,
        };
    };
    let up = relative_root(folder, root);
    let schema = if root.join("schemas/plugin.schema.json").is_file() {
        SchemaLink::Checkout(format!("{up}schemas/plugin.schema.json"))
    } else {
        SchemaLink::Beside
    };
    Surroundings {
        sdk: SdkDependency::Path(format!("{up}bindings/sdk")),
        schema,
    }
}

/// `root` as seen from `folder`, a folder under `root`: `../../` (empty
/// when they are the same).
fn relative_root(folder: &Path, root: &Path) -> String {
    let depth = folder
        .strip_prefix(root)
        .map(|rel| {
            rel.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count()
        })
        .unwrap_or(0);
    "../".repeat(depth)
}

/// The requirement cargo reads as "compatible with `version`": `0.1` for
/// `0.1.3`, `1` for `1.4.0`.
fn sdk_version_req(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_owned(),
        _ => version.to_owned(),
    }
}

/// Creates the plugin folder `dir/name` with the scaffold's files and
/// returns their paths (as `dir` was given). `dir` is created when missing;
/// an existing `dir/name` is never touched.
pub fn create(dir: &Path, name: &str, runtime: RuntimeKind) -> Result<Vec<PathBuf>, NewError> {
    validate_name(name, runtime)?;
    let folder = dir.join(name);
    if folder.symlink_metadata().is_ok() {
        return Err(NewError::Exists(folder));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NewError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let around = match dir.canonicalize() {
        Ok(abs) => surroundings(&abs.join(name)),
        Err(source) => return Err(io(dir)(source)),
    };
    // `create_dir`, not `create_dir_all`: it fails when the folder appeared
    // since the check above, so an existing folder is never written into.
    std::fs::create_dir(&folder).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => NewError::Exists(folder.clone()),
        _ => io(&folder)(e),
    })?;
    let mut written = Vec::new();
    for f in render(name, runtime, dir, &around) {
        let path = folder.join(f.path);
        let result = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, &f.text));
        if let Err(source) = result {
            // Half a plugin would fail `check` in confusing ways: leave nothing.
            let _ = std::fs::remove_dir_all(&folder);
            return Err(NewError::Io { path, source });
        }
        written.push(path);
    }
    Ok(written)
}

/// What `plughost new` prints: the files created and the next steps.
pub fn summary(dir: &Path, name: &str, runtime: RuntimeKind, written: &[PathBuf]) -> String {
    let mut out = String::new();
    for path in written {
        let _ = writeln!(out, "created {}", path.display());
    }
    let folder = dir.join(name);
    let _ = writeln!(out, "\nnext:");
    if runtime == RuntimeKind::Native {
        let manifest = shell_quote(&folder.join("Cargo.toml").display().to_string());
        let _ = writeln!(out, "  cargo build --manifest-path {manifest}");
    }
    let _ = writeln!(out, "  {}", check_command(dir));
    let _ = writeln!(out, "  {}", test_command(dir, name));
    let _ = writeln!(
        out,
        "  see {} for how to try it",
        folder.join("README.md").display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files of plugin `name` for `runtime`, in `plugins` of a
    /// checkout: the SDK and the schema by relative path.
    pub(super) fn rendered(name: &str, runtime: RuntimeKind) -> Vec<File> {
        render(name, runtime, Path::new("plugins"), &in_checkout())
    }

    /// The surroundings of a plugin in `plugins/` of a checkout.
    pub(super) fn in_checkout() -> Surroundings {
        Surroundings {
            sdk: SdkDependency::Path("../../bindings/sdk".into()),
            schema: SchemaLink::Checkout("../../schemas/plugin.schema.json".into()),
        }
    }

    /// The text of `path` among `files`.
    pub(super) fn text<'a>(files: &'a [File], path: &str) -> &'a str {
        &files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no {path} in {files:?}"))
            .text
    }

    #[test]
    fn names_follow_the_manifest_rule() {
        for ok in ["a", "hello", "word-count", "a_b", "0day", &"x".repeat(64)] {
            assert!(validate_name(ok, RuntimeKind::Lua).is_ok(), "{ok}");
        }
        for bad in ["", "Hello", "-x", "_x", "a.b", "a b", "ü", &"x".repeat(65)] {
            let err = validate_name(bad, RuntimeKind::Lua).unwrap_err();
            assert!(matches!(err, NewError::BadName(_)), "{bad}");
        }
        assert_eq!(
            validate_name("Hello", RuntimeKind::Rhai)
                .unwrap_err()
                .to_string(),
            "invalid plugin name `Hello`: use 1 to 64 lowercase letters, digits, `_` and `-`, \
             starting with a letter or digit"
        );
    }

    #[test]
    fn native_names_must_also_be_crate_names() {
        assert!(validate_name("word-count", RuntimeKind::Native).is_ok());
        for bad in ["0day", "fn", "std", "proc-macro"] {
            assert!(validate_name(bad, RuntimeKind::Lua).is_ok(), "{bad}");
            let err = validate_name(bad, RuntimeKind::Native).unwrap_err();
            assert!(matches!(err, NewError::BadCrateName { .. }), "{bad}");
        }
    }

    #[test]
    fn paths_climb_to_the_checkout() {
        let root = Path::new("/src/plughost");
        assert_eq!(relative_root(&root.join("plugins/hello"), root), "../../");
        assert_eq!(relative_root(&root.join("hello"), root), "../");
        assert_eq!(sdk_version_req("0.1.0"), "0.1");
        assert_eq!(sdk_version_req("1.4.2"), "1");
    }

    /// Writes a `plughost-sdk` crate manifest into `dir`.
    fn fake_sdk(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"plughost-sdk\"\n",
        )
        .unwrap();
    }

    #[test]
    fn inside_a_checkout_the_sdk_and_schema_are_found_by_relative_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let folder = root.join("plugins/deep/hello");
        fake_sdk(&root.join("bindings/sdk"));
        let elsewhere = root.join("elsewhere/sdk");
        fake_sdk(&elsewhere);
        // A checkout without schemas/ (an older one): the schema goes beside.
        assert_eq!(
            surroundings_with(&folder, Some(&elsewhere)),
            Surroundings {
                sdk: SdkDependency::Path("../../../bindings/sdk".into()),
                schema: SchemaLink::Beside,
            }
        );
        std::fs::create_dir_all(root.join("schemas")).unwrap();
        std::fs::write(root.join("schemas/plugin.schema.json"), "{}").unwrap();
        assert_eq!(
            surroundings_with(&folder, Some(&elsewhere)),
            Surroundings {
                sdk: SdkDependency::Path("../../../bindings/sdk".into()),
                schema: SchemaLink::Checkout("../../../schemas/plugin.schema.json".into()),
            }
        );
    }

    /// Outside a checkout: the SDK the binary was built from, by absolute
    /// path, while it is there; else a version, which the author must
    /// replace (the SDK is not published).
    #[test]
    fn outside_a_checkout_the_sdk_is_the_one_the_binary_was_built_from() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let folder = root.join("plugins/hello");
        let built_from = root.join("src/plughost/bindings/sdk");
        assert_eq!(
            surroundings_with(&folder, Some(&built_from)),
            Surroundings {
                sdk: SdkDependency::Version(sdk_version_req(env!("CARGO_PKG_VERSION"))),
                schema: SchemaLink::Beside,
            }
        );
        fake_sdk(&built_from);
        assert_eq!(
            surroundings_with(&folder, Some(&built_from)).sdk,
            SdkDependency::Path(built_from.display().to_string())
        );
        assert_eq!(
            surroundings_with(&folder, None).sdk,
            SdkDependency::Version(sdk_version_req(env!("CARGO_PKG_VERSION")))
        );
        // This binary's own: the checkout it was built in.
        let ours = surroundings(&folder);
        let SdkDependency::Path(path) = ours.sdk else {
            panic!("{ours:?}")
        };
        assert!(Path::new(&path).join("src/lib.rs").is_file(), "{path}");
    }

    #[test]
    fn a_scaffold_outside_a_checkout_gets_the_schema_beside_its_manifest() {
        let around = Surroundings {
            sdk: SdkDependency::Version("0.1".into()),
            schema: SchemaLink::Beside,
        };
        for runtime in RuntimeKind::ALL {
            let files = render("hello", runtime, Path::new("plugins"), &around);
            assert_eq!(text(&files, SCHEMA_COPY), crate::cli::schema::PLUGIN);
            assert!(
                text(&files, "plugin.yaml")
                    .starts_with("# yaml-language-server: $schema=plugin.schema.json\n"),
                "{runtime}"
            );
            let inside = rendered("hello", runtime);
            assert!(inside.iter().all(|f| f.path != SCHEMA_COPY), "{runtime}");
            assert!(
                text(&inside, "plugin.yaml").starts_with(
                    "# yaml-language-server: $schema=../../schemas/plugin.schema.json\n"
                ),
                "{runtime}"
            );
        }
    }

    #[test]
    fn each_runtime_gets_its_files() {
        let paths = |rt| {
            rendered("hello", rt)
                .iter()
                .map(|f| f.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(RuntimeKind::Lua),
            [
                "plugin.yaml",
                "main.lua",
                "README.md",
                "tests/events.jsonl",
                "tests/expect.jsonl"
            ]
        );
        assert_eq!(
            paths(RuntimeKind::Rhai),
            [
                "plugin.yaml",
                "main.rhai",
                "README.md",
                "tests/events.jsonl",
                "tests/expect.jsonl"
            ]
        );
        assert_eq!(
            paths(RuntimeKind::Native),
            [
                "plugin.yaml",
                "Cargo.toml",
                "src/lib.rs",
                ".gitignore",
                "README.md",
                "tests/events.jsonl",
                "tests/expect.jsonl"
            ]
        );
    }

    #[test]
    fn scripts_define_every_hook() {
        let lua = rendered("hello", RuntimeKind::Lua);
        let rhai = rendered("hello", RuntimeKind::Rhai);
        let native = rendered("hello", RuntimeKind::Native);
        for hook in ["init", "on_event", "on_config", "shutdown"] {
            assert!(text(&lua, "main.lua").contains(&format!("\nfunction {hook}(")));
            assert!(text(&rhai, "main.rhai").contains(&format!("\nfn {hook}(")));
            assert!(text(&native, "src/lib.rs").contains(&format!("    fn {hook}(&mut self")));
        }
        for (files, script) in [(&lua, "main.lua"), (&rhai, "main.rhai")] {
            let s = text(files, script);
            assert!(s.contains("\"hello.out\""), "{s}");
            assert!(!s.contains('@'), "a placeholder was left: {s}");
        }
        assert!(text(&rhai, "main.rhai").contains("if !(\"count\" in state)"));
    }

    #[test]
    fn create_writes_the_folder_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        let written = create(&dir, "hello", RuntimeKind::Lua).unwrap();
        // Outside a checkout: the manifest's schema is written beside it.
        assert_eq!(
            written,
            [
                "plugin.yaml",
                "main.lua",
                "README.md",
                SCHEMA_COPY,
                "tests/events.jsonl",
                "tests/expect.jsonl"
            ]
            .map(|f| dir.join("hello").join(f))
        );
        assert!(written.iter().all(|p| p.is_file()));
        let again = create(&dir, "hello", RuntimeKind::Rhai).unwrap_err();
        assert!(matches!(again, NewError::Exists(_)), "{again}");
        assert!(!dir.join("hello/main.rhai").exists());
        let bad = create(&dir, "Bad", RuntimeKind::Lua).unwrap_err();
        assert!(matches!(bad, NewError::BadName(_)), "{bad}");
        assert!(!dir.join("Bad").exists());
    }
}
