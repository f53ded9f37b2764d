//! The build-time settings of tenantry-runtime:
//!
//! - `TENANTRY_SCHEMA`, the schema of tenantry's own objects (default `tenantry`), checked here
//!   (`src/schema/name_rule.rs`): the code gets it as `env!("TENANTRY_SCHEMA_NAME")`, the Diesel
//!   `table!`s of `src/schema/tables.rs` through `$OUT_DIR/tables_in_schema.rs`.
//! - tenantry's migrations (`migrations/*/up.sql`), listed in `$OUT_DIR/framework_migrations.rs`
//!   in the order they run (`src/schema/render.rs` renders them for the schema). Cargo does not
//!   track a directory's new entries by itself, hence `rerun-if-changed`.

use std::path::Path;
use std::{env, fs, process};

#[path = "src/schema/name_rule.rs"]
#[allow(dead_code)]
mod name_rule;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed={}", name_rule::SETTING);
    let name = match env::var(name_rule::SETTING) {
        Ok(name) => name,
        Err(env::VarError::NotPresent) => name_rule::DEFAULT.to_owned(),
        Err(env::VarError::NotUnicode(raw)) => fail(&format!(
            "{}={raw:?} is not UTF-8: the schema of tenantry's own tables must be a lowercase \
             SQL identifier ([a-z_][a-z0-9_]*)",
            name_rule::SETTING
        )),
    };
    if let Err(message) = name_rule::check(&name) {
        fail(&message);
    }
    println!("cargo:rustc-env=TENANTRY_SCHEMA_NAME={name}");

    let out = env::var("OUT_DIR").unwrap_or_else(|_| fail("cargo sets OUT_DIR"));
    let out = Path::new(&out);
    write(
        &out.join("tables_in_schema.rs"),
        &format!("tables!({name});\n"),
    );
    write(&out.join("framework_migrations.rs"), &migration_list());
}

/// `&[("00000000000001_framework", include_str!(".../up.sql")), ..]`, sorted by name.
fn migration_list() -> String {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("migrations");
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", dir.display())));
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut list = String::from("&[\n");
    for name in names {
        let migration = dir.join(&name);
        // Every migration runs in its transaction, forward only: a metadata.toml (which could say
        // otherwise) or a down.sql would not be read, so neither may exist.
        for unread in ["metadata.toml", "down.sql"] {
            if migration.join(unread).exists() {
                fail(&format!(
                    "migrations/{name}/{unread}: tenantry's migrations run forward only, each in \
                     its transaction (src/schema/render.rs reads up.sql alone)"
                ));
            }
        }
        let up = migration.join("up.sql");
        if !up.is_file() {
            fail(&format!("migrations/{name} has no up.sql"));
        }
        list.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            up.display().to_string()
        ));
    }
    list.push_str("]\n");
    list
}

fn write(path: &Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    process::exit(1)
}
