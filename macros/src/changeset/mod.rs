//! `#[derive(AsChangeset)]` (tenantry's): parse (`model`) → expand.
//!
//! The same derive as Diesel's for the common case (a struct of new values for one table,
//! `Option` fields skipped when `None`, the primary key left out), built from tenantry's
//! `column.to(value)` assignments, whose columns tenantry checks: a field that maps to a tenant
//! table's tenant column does not compile.

mod expand;
mod model;

#[cfg(test)]
mod tests;

pub(crate) use expand::expand;
