//! Runtime of tenantry: the types and traits that tenantry's generated code and its users call.
//!
//! Depend on the `tenantry` crate, which re-exports everything here together with the macros.

mod audit;
pub mod auth;
mod bypass;
mod conn;
mod ctx;
mod db;
mod declare;
mod error;
pub mod identity;
mod insert;
mod inspect;
pub mod log_limit;
mod migrate;
mod pool;
mod query;
pub mod schema;
mod scoped;
pub mod serve;
pub mod settings;
mod table;
#[cfg(feature = "testing")]
pub mod testing;

pub use bypass::{no_tenant_scope, AuditedBypass, BypassActor, SystemJob};
pub use conn::{BypassConn, TenantConn};
pub use ctx::{Access, Actor, CanWrite, FromBareId, ReadOnly, ReadWrite, TenantCtx};
pub use db::{Db, DbConfig};
pub use declare::{declare_tables, TableDecl};
pub use error::{DbError, ScopeError};
pub use insert::{InsertMany, InsertOne, ScopedInsert, TenantRow};
pub use inspect::{inspect, Finding, Report};
pub use migrate::{
    migrate, migrate_url, run_migrations, MigrateError, Migration, FRAMEWORK_MIGRATIONS,
};
pub use query::{RunTenantQuery, TenantQuery};
pub use scoped::{NoWidening, Scoped, ScopedJoin, ScopedOn, ScopedTable, ScopedWhere};
pub use table::{
    Declared, GlobalTable, IsGlobal, IsTenant, JoinScope, TableKind, TenantJoinOn, TenantTable,
};

/// The names a module that uses tenantry needs: `use tenantry::prelude::*;`.
///
/// It carries Diesel's query-building traits and derives (everything of `diesel::prelude`
/// except `RunQueryDsl`, `Connection` and `SaveChangesDsl`, which run queries outside tenant
/// scoping), tenantry's run methods and the main types. Do not also import `diesel::prelude::*`
/// or `diesel_async::RunQueryDsl` in the same module: their `load`/`execute` would be ambiguous.
pub mod prelude {
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
    pub use crate::insert::{insert, insert_many};
    pub use crate::scoped::scoped;
    pub use ::core::default::Default;
    pub use ::core::marker::Copy;
    pub use ::core::option::Option;
    pub use ::core::result::Result;
    pub use diesel;
    pub use uuid::Uuid;

    /// Seal of the table-declaration traits; implemented only by generated code.
    pub trait Sealed {}
}

mod framework_tables {
    use crate::schema::{memberships, tenants, users};
    use crate::table::{Declared, GlobalTable, IsGlobal};
    use crate::TableDecl;

    macro_rules! global {
        ($($t:ident),*) => {$(
            impl crate::__private::Sealed for $t::table {}
            impl Declared for $t::table {
                type Kind = IsGlobal;
                const DECL: TableDecl = TableDecl::Global { table: stringify!($t) };
            }
            impl GlobalTable for $t::table {}
        )*};
    }
    global!(tenants, users, memberships);
}
