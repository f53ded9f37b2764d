//! The supported forms compile (what `tests/ui/fail` refuses has a working form here): every
//! query form, checked writes, role-checked handlers mounted on a router, diesel-async's
//! `RunQueryDsl` beside the prelude. Plain modules of this test binary, type-checked with it:
//! nothing here runs, and trybuild is left with compile-fail cases only, which it checks with
//! `cargo check` instead of building a binary per case.

mod diesel_async_beside_the_prelude;
mod handlers_with_roles;
mod scoped_forms;
