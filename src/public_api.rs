//! The public API, listed in `public-api.txt` at the repository's root so that a change to it
//! shows in review: this test reads the facade (`src/lib.rs`) and the runtime modules it
//! re-exports whole, prints every public path, and fails when the list differs. Rewrite the list
//! with `UPDATE_PUBLIC_API=1 cargo test -p tenantry --lib public_api`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `a::b::{c, d::{e, f}}` → `a::b::c`, `a::b::d::e`, `a::b::d::f` (renames keep the new name).
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    match tree.find('{') {
        None => vec![tree.to_owned()],
        Some(open) => {
            let prefix = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap()];
            let mut items = Vec::new();
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&inner[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            items.push(&inner[start..]);
            items
                .into_iter()
                .filter(|i| !i.trim().is_empty())
                .flat_map(|i| expand(&format!("{prefix}{}", i.trim())))
                .collect()
        }
    }
}

/// The last segment a path is known by (`x as y` → `y`).
fn name(path: &str) -> &str {
    match path.split_once(" as ") {
        Some((_, alias)) => alias.trim(),
        None => path.rsplit("::").next().unwrap().trim(),
    }
}

/// The file of runtime module `path` (`identity::auth` → `runtime/src/identity/auth/mod.rs`).
fn runtime_file(path: &str) -> PathBuf {
    let dir = root().join("runtime/src").join(path.replace("::", "/"));
    if dir.join("mod.rs").exists() {
        dir.join("mod.rs")
    } else {
        dir.with_extension("rs")
    }
}

/// Whether runtime path `a::b::c` names a public module (`pub mod c` in `a::b`'s file).
fn declares_module(path: &str) -> bool {
    let (parent, child) = match path.rsplit_once("::") {
        Some((parent, child)) => (runtime_file(parent), child),
        None => (root().join("runtime/src/lib.rs"), path),
    };
    fs::read_to_string(parent).is_ok_and(|text| {
        text.lines().any(|l| {
            l.trim() == format!("pub mod {child};") || l.trim() == format!("pub mod {child} {{")
        })
    })
}

/// Top-level items of `text` (not indented): `pub use` trees, `pub mod` blocks and files, and
/// `pub` items, each added under `prefix` to `out`. `file` is where `pub mod x;` children live.
fn scan(text: &str, prefix: &str, file: &Path, out: &mut BTreeSet<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut hidden = false;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("#[doc(hidden)]") {
            hidden = true;
            i += 1;
            continue;
        }
        if line.starts_with("pub use ") {
            let mut stmt = line.to_owned();
            while !stmt.trim_end().ends_with(';') {
                i += 1;
                stmt.push_str(lines[i]);
            }
            let tree = stmt
                .trim_start_matches("pub use ")
                .trim_end()
                .trim_end_matches(';');
            for path in expand(tree) {
                let item = format!("{prefix}::{}", name(&path));
                if hidden {
                    continue;
                }
                // A whole runtime module re-exported: list what it holds.
                let module = path.split(" as ").next().unwrap().trim();
                let module = module.trim_start_matches("tenantry_runtime::");
                let is_module = path.starts_with("tenantry_runtime::") && declares_module(module);
                if is_module {
                    let file = runtime_file(module);
                    out.insert(format!("{item} (module)"));
                    scan(&fs::read_to_string(&file).unwrap(), &item, &file, out);
                } else {
                    out.insert(item);
                }
            }
        } else if let Some(rest) = line.strip_prefix("pub mod ") {
            let module = rest.trim_end_matches([';', '{', ' ']).to_owned();
            let item = format!("{prefix}::{module}");
            if !hidden {
                out.insert(format!("{item} (module)"));
                if rest.ends_with(';') {
                    let dir = file.parent().unwrap().join(&module);
                    let child = if dir.join("mod.rs").exists() {
                        dir.join("mod.rs")
                    } else {
                        dir.with_extension("rs")
                    };
                    scan(&fs::read_to_string(&child).unwrap(), &item, &child, out);
                } else {
                    // An inline module: its lines are indented by four.
                    let mut body = String::new();
                    i += 1;
                    while lines[i] != "}" {
                        body.push_str(lines[i].strip_prefix("    ").unwrap_or(lines[i]));
                        body.push('\n');
                        i += 1;
                    }
                    scan(&body, &item, file, out);
                }
            }
        } else {
            for kind in [
                "struct", "enum", "trait", "type", "const", "static", "fn", "async fn",
            ] {
                if let Some(rest) = line.strip_prefix(&format!("pub {kind} ")) {
                    let end = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    if !hidden {
                        out.insert(format!("{prefix}::{}", &rest[..end]));
                    }
                }
            }
        }
        if !line.starts_with("#[") && !line.starts_with("///") && !line.is_empty() {
            hidden = false;
        }
        i += 1;
    }
}

#[test]
fn public_api_matches_the_list() {
    let lib = root().join("src/lib.rs");
    let mut names = BTreeSet::new();
    scan(
        &fs::read_to_string(&lib).unwrap(),
        "tenantry",
        &lib,
        &mut names,
    );
    let listed: String = names.iter().map(|n| format!("{n}\n")).collect();
    let path = root().join("public-api.txt");
    if std::env::var_os("UPDATE_PUBLIC_API").is_some() {
        fs::write(&path, &listed).unwrap();
    }
    let kept = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == listed,
        "the public API changed: review it, then rewrite public-api.txt with \
         `UPDATE_PUBLIC_API=1 cargo test -p tenantry --lib public_api`\n\n{listed}"
    );
}
