//! Compile-time guarantees: each `tests/ui/fail/*.rs` must fail to compile with the message in
//! its `.stderr`. The forms that must compile are modules of this binary (`compiles/`), so
//! trybuild has only compile-fail cases and checks them with `cargo check`, never building them.
//!
//! Bless changed messages with `TRYBUILD=overwrite cargo test --test it ui::`, then review the
//! diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
}
