//! Runtime of tenantry: the types and traits that tenantry's generated code and its users call.
//!
//! Depend on the `tenantry` crate, which re-exports everything here together with the macros.

mod audit;
pub mod audit_chain;
pub mod auth;
mod bounded;
mod bypass;
mod changes;
pub mod citus;
mod columns;
mod conn;
mod ctx;
mod db;
mod declare;
mod error;
pub mod fairness;
mod fragment;
mod global_query;
pub mod identity;
mod insert;
mod inspect;
mod jobs;
pub mod log_limit;
mod migrate;
mod pool;
pub mod pooler;
mod query;
pub mod queue;
mod role_names;
pub mod schema;
mod scoped;
mod seal;
pub mod serve;
pub mod settings;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod upsert;

pub use bypass::{no_tenant_scope, AuditedBypass, BypassActor};
pub use changes::{excluded, Assignable, CheckedChanges, Excluded, Set, SetColumn, UpdateValue};
pub use columns::{NotTheTenantColumn, UuidNotNull};
pub use conn::{BypassConn, TenantConn};
pub use ctx::{
    Access, Actor, CanWrite, FromBareId, NoAmbientTenant, NotFromRequestData, ReadOnly, ReadWrite,
    TenantCtx, TestingFeature,
};
pub use db::{Db, DbConfig, RoleEscalation, RolePower};
pub use declare::declare_tables;
pub use error::{DbError, ScopeError};
pub use fragment::{FragmentPlace, RuntimeSqlFragment, SqlFragment};
pub use global_query::{NoColumn, OnlyGlobalTables, ReadsOnlyGlobalTables};
pub use insert::{InsertMany, InsertOne, ScopedInsert, TenantRow};
pub use inspect::{inspect, inspect_roles, Finding, PolicyDifference, Report, SearchPathProblem};
pub use jobs::{Jobs, JobsOnly, SystemJob};
pub use migrate::{
    migrate, migrate_roles, migrate_url, migrate_with, migrate_with_roles, MigrateError, Migrated,
    FRAMEWORK_MIGRATIONS,
};
pub use pooler::{require_session, Pooler};
pub use query::{RunFuture, RunTenantQuery, TenantQuery};
pub use role_names::{RoleNameError, RoleNames};
pub use scoped::{
    FilterValue, FromOnly, NoWidening, Scoped, ScopedExpr, ScopedFrom, ScopedIn, ScopedJoin,
    ScopedOn, ScopedSource, ScopedSubquery, ScopedWhere,
};
pub use table::{
    Declared, GlobalTable, IsGlobal, IsTenant, JoinScope, ReadWithoutScope, TableDecl, TableKind,
    TenantJoinOn, TenantTable,
};
pub use upsert::{
    Columns, ConflictTarget, LeadsWithTheTenantColumn, NamesItsTarget, OnConflictAction, OneColumn,
    Returning, ScopedDoUpdate, ScopedOnConflict, TargetColumn, Upsert, UpsertUpdate,
};

/// The names a module that uses tenantry needs: `use tenantry::prelude::*;`.
///
/// It carries Diesel's query-building traits and derives (everything of `diesel::prelude`
/// except `RunQueryDsl`, `Connection` and `SaveChangesDsl`, which run queries outside tenant
/// scoping, and Diesel's `AsChangeset` derive, replaced by tenantry's, whose columns tenantry
/// checks), tenantry's run methods, `column.to(value)` for updates, and the main types. Do not
/// also import `diesel::prelude::*` or `diesel_async::RunQueryDsl` in the same module: their
/// `load`/`execute` would be ambiguous.
pub mod prelude {
    pub use crate::changes::SetColumn as _;
    pub use crate::query::RunTenantQuery as _;
    pub use crate::{AuditedBypass, Db, ReadOnly, ReadWrite, TenantConn, TenantCtx};
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
    pub use crate::bypass::__no_tenant_scope_literal;
    pub use crate::columns::{
        has_column, sql_name, ColumnNames, NotTiedToTenants, TenantKeyColumn, TenantsProbe,
        TiedToTenants,
    };
    pub use crate::fragment::{sql_fragment, FragmentSite};
    pub use crate::identity::life::{ByRole, EndOfRequest};
    pub use crate::identity::params::{AxumParam, FilledParam, ParamProbe};
    pub use crate::insert::{insert, insert_many};
    pub use crate::scoped::scoped;
    pub use crate::table::sealed::Declaration;
    #[cfg(feature = "testing")]
    pub use crate::testing::isolation;
    #[cfg(feature = "testing")]
    pub use crate::testing::{run_test, NoMigrations};
    pub use diesel;

    /// `#[tenantry::test]` checks with this that tenantry's `testing` feature is on.
    pub const fn testing_feature<T: crate::TestingFeature>() {}
}

mod framework_tables {
    use crate::schema::{memberships, tenants, users};
    use crate::table::{sealed::Declaration, IsGlobal, TableDecl};

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
