//! Runtime of tenantry: the types and traits that tenantry's generated code and its users call.
//!
//! Depend on the `tenantry` crate, which re-exports by name what applications write, together
//! with the macros. The paths of this crate are its internal layout (the rooms of
//! `docs/architecture.md`) and change without notice.

/// The schema of tenantry's own objects as a string literal, for `concat!` in SQL that must stay
/// `&'static str` (the seal's statements): `concat!("SELECT ", schema_name!(), ".tenantry_enter(..)")`.
/// It is `TENANTRY_SCHEMA` at build time (default `tenantry`), checked by `build.rs`; public as
/// `tenantry::schema::NAME`. Defined before the rooms so that every room may use it.
macro_rules! schema_name {
    () => {
        env!("TENANTRY_SCHEMA_NAME")
    };
}

// The rooms, from the bottom up: each imports only rooms above it in this list (checked by
// `tests/rooms.rs`, drawn in `docs/architecture.md`).
#[cfg(feature = "citus")]
pub mod citus;
mod clock;
pub mod ctx;
pub mod db;
pub mod error;
pub mod extract;
pub mod fairness;
pub mod identity;
pub mod jobs;
#[cfg(feature = "log-limit")]
pub mod log_limit;
pub mod pool;
pub mod queue;
pub mod schema;
pub mod scope;
pub mod serve;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;

/// The names a module that uses tenantry needs: `use tenantry::prelude::*;`.
///
/// It carries Diesel's query-building traits and derives (everything of `diesel::prelude`
/// except `RunQueryDsl`, `Connection` and `SaveChangesDsl`, which run queries outside tenant
/// scoping, and Diesel's `AsChangeset` derive, replaced by tenantry's, whose columns tenantry
/// checks), tenantry's run methods, `column.to(value)` for updates, and the main types. Do not
/// also import `diesel::prelude::*` or `diesel_async::RunQueryDsl` in the same module: their
/// `load`/`execute` would be ambiguous.
pub mod prelude {
    pub use crate::ctx::{AuditedBypass, ReadOnly, ReadWrite, TenantConn, TenantCtx};
    pub use crate::db::Db;
    pub use crate::scope::changes::SetColumn as _;
    pub use crate::scope::query::RunTenantQuery as _;
    pub use diesel::associations::{Associations, GroupedBy, Identifiable};
    pub use diesel::deserialize::{Queryable, QueryableByName};
    pub use diesel::expression::{
        AppearsOnTable, BoxableExpression, Expression, IntoSql as _, Selectable,
        SelectableExpression, SelectableHelper,
    };
    pub use diesel::expression_methods::*;
    pub use diesel::insertable::Insertable;
    pub use diesel::query_builder::AsChangeset;
    pub use diesel::query_dsl::{BelongingToDsl, JoinOnDsl, QueryDsl};
    pub use diesel::query_source::{Column, QuerySource, Table};
    pub use diesel::result::{OptionalExtension, QueryResult};
}

/// Used by generated code, not public API: anything here may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::ctx::bypass::__no_tenant_scope_literal;
    pub use crate::ctx::life::{ByRole, EndOfRequest};
    pub use crate::ctx::{Access, CanWrite, TenantConn, TenantCtx};
    pub use crate::extract::params::{AxumParam, FilledParam, ParamProbe};
    pub use crate::identity::TenantRoleRequirement;
    pub use crate::scope::columns::{
        has_column, sql_name, ColumnNames, NotTiedToTenants, TenantKeyColumn, TenantsProbe,
        TiedToTenants,
    };
    pub use crate::scope::fragment::{sql_fragment, FragmentSite};
    pub use crate::scope::insert::{insert, insert_many};
    pub use crate::scope::scoped::scoped;
    pub use crate::scope::table::sealed::Declaration;
    pub use crate::scope::{
        InsertMany, InsertOne, IsGlobal, IsTenant, Scoped, ScopedFrom, ScopedInsert, Set,
        SetColumn, TableDecl,
    };
    #[cfg(feature = "testing")]
    pub use crate::testing::isolation;
    #[cfg(feature = "testing")]
    pub use crate::testing::{run_test, NoMigrations};
    pub use diesel;
    pub use uuid::Uuid;

    /// `#[tenantry::test]` checks with this that tenantry's `testing` feature is on.
    pub const fn testing_feature<T: crate::ctx::TestingFeature>() {}
}

mod framework_tables {
    use crate::schema::tables::{memberships, tenants, users};
    use crate::scope::table::{sealed::Declaration, IsGlobal, TableDecl};

    // tenantry's own directory tables are read without a scope, and row-level security limits
    // them to the active tenant: the tenant itself, its memberships and its members.
    macro_rules! global {
        ($($t:ident),*) => {$(
            impl Declaration for $t::table {
                type DeclaredKind = IsGlobal;
                const DECLARATION: TableDecl = TableDecl::global(stringify!($t));
            }
        )*};
    }
    global!(tenants, users, memberships);
}
