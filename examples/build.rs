//! Rebuild when a migration directory is added or removed: `embed_migrations!` reads the
//! `migrations/` directory, which Cargo does not track by itself.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
