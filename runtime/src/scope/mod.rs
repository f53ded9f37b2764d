//! Scoping: tables declared as tenant or global, and the queries, inserts and updates that can
//! only touch the active tenant's rows.

pub(crate) mod changes;
pub(crate) mod columns;
pub(crate) mod declare;
pub(crate) mod fragment;
pub(crate) mod global_query;
pub(crate) mod insert;
pub(crate) mod query;
pub(crate) mod scoped;
pub(crate) mod table;
pub(crate) mod upsert;

pub use changes::{excluded, Assignable, CheckedChanges, Excluded, Set, SetColumn, UpdateValue};
pub use columns::{NotTheTenantColumn, UuidNotNull};
pub use declare::declare_tables;
pub use fragment::{FragmentPlace, RuntimeSqlFragment, SqlFragment};
pub use global_query::{NoColumn, OnlyGlobalTables, ReadsOnlyGlobalTables};
pub use insert::{InsertMany, InsertOne, ScopedInsert, TenantRow};
pub use query::{RunFuture, RunTenantQuery, TenantQuery};
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
