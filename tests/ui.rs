//! Compile-time guarantees: each `tests/ui/fail/*.rs` must fail to compile with the message in
//! its `.stderr`; each `tests/ui/pass/*.rs` must compile and run.
//!
//! Bless changed messages with `TRYBUILD=overwrite cargo test --test ui`, then review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
