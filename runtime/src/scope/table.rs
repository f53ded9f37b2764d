//! Table declarations: which tables are tenant-scoped and which are global.
//!
//! `#[tenant_table]` and `#[global_table]` implement one hidden trait for the Diesel `table!`
//! type of a model (so declaring a table twice is one "conflicting implementations" error);
//! [`Declared`], [`TenantTable`] and [`GlobalTable`] follow from it. The checks
//! are made against the schema (`table!`'s columns and types), not the model's fields: see
//! the column helpers of `columns.rs`, which the generated code evaluates at compile time.

use std::convert::Infallible;
use std::marker::PhantomData;

use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::Table;
use uuid::Uuid;

pub(crate) mod sealed {
    /// Seal of the table kinds.
    pub trait Sealed {}

    /// What `#[tenant_table]` / `#[global_table]` generate for a table (through
    /// `tenantry::__private`); [`super::Declared`] follows from it and cannot be implemented by
    /// hand. Implementing this instead is writing tenantry's generated code by hand.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not declared to tenantry",
        label = "declare its model with `#[tenant_table]` or `#[global_table]`",
        note = "every table a tenant transaction touches must be declared: `#[tenant_table]` for tables with a tenant column, `#[global_table]` for shared reference data; the attributes check the declaration against the `table!` schema",
        note = "a scoped join takes the table itself and follows `joinable!`: `.inner_join(projects::table)`; tenantry adds the joined tenant table's `tenant_id = $tenant` to that `ON` clause, so an explicit `.on(..)` or an alias is refused inside a tenant scope"
    )]
    pub trait Declaration: diesel::Table {
        /// [`super::IsTenant`] (with its tenant column) or [`super::IsGlobal`].
        type DeclaredKind: super::TableKind;
        /// What the declaration says.
        const DECLARATION: super::TableDecl;
    }
}

/// Which kind of table a declared table is: [`IsTenant`] or [`IsGlobal`].
pub trait TableKind: sealed::Sealed {}

/// Kind of a `#[tenant_table]` whose tenant column is `C`.
#[derive(Debug, Clone, Copy)]
pub struct IsTenant<C>(Infallible, PhantomData<C>);
/// Kind of a `#[global_table]`.
#[derive(Debug, Clone, Copy)]
pub enum IsGlobal {}
impl<C> sealed::Sealed for IsTenant<C> {}
impl sealed::Sealed for IsGlobal {}
impl<C> TableKind for IsTenant<C> {}
impl TableKind for IsGlobal {}

/// What a declaration says, as [`crate::scope::declare_tables`] applies it to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDecl {
    table: &'static str,
    tenant_column: Option<&'static str>,
}

impl TableDecl {
    /// A tenant table and its tenant column, for [`crate::scope::declare_tables`] (what
    /// `#[tenant_table]` records; the database checks that the column is the tenant key).
    pub const fn tenant(table: &'static str, tenant_column: &'static str) -> Self {
        Self {
            table,
            tenant_column: Some(tenant_column),
        }
    }

    /// A global table, for [`crate::scope::declare_tables`] (what `#[global_table]` records; the
    /// database refuses a table with a `tenant_id` column or a foreign key to `tenants`).
    pub const fn global(table: &'static str) -> Self {
        Self {
            table,
            tenant_column: None,
        }
    }

    /// The SQL table name.
    pub fn table(&self) -> &'static str {
        self.table
    }

    /// The tenant column of a tenant table; `None` for a global table.
    pub fn tenant_column(&self) -> Option<&'static str> {
        self.tenant_column
    }
}

/// A table declared to tenantry, either tenant-scoped or global.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not declared to tenantry",
    label = "declare its model with `#[tenant_table]` or `#[global_table]`",
    note = "every table a tenant transaction touches must be declared: `#[tenant_table(table = ..)]` for tables with a tenant column, `#[global_table(table = ..)]` for shared reference data"
)]
pub trait Declared: Table + sealed::Declaration {
    /// [`IsTenant`] (with its tenant column) or [`IsGlobal`].
    type Kind: TableKind;
    /// What the declaration says, as [`crate::scope::declare_tables`] applies it.
    const DECL: TableDecl;
}

/// The only implementation: from the attributes' generated declaration, so that a table cannot
/// be declared (say, global) through this public trait by hand.
impl<T: sealed::Declaration> Declared for T {
    type Kind = T::DeclaredKind;
    const DECL: TableDecl = T::DECLARATION;
}

/// A table whose rows belong to one tenant each (declared with `#[tenant_table]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tenant table",
    label = "declare its model with `#[tenant_table(table = ..)]`",
    note = "a tenant table carries `tenant_id uuid not null` and is read through `<Model>::scoped(conn)`"
)]
pub trait TenantTable: Declared + Default + Copy {
    /// The column that holds the owning tenant's id.
    type TenantColumn: Column<Table = Self, SqlType = diesel::sql_types::Uuid> + Default + Copy;
}

impl<T, C> TenantTable for T
where
    T: Declared<Kind = IsTenant<C>> + Default + Copy,
    C: Column<Table = T, SqlType = diesel::sql_types::Uuid> + Default + Copy,
{
    type TenantColumn = C;
}

/// Table kinds whose rows may be read without a tenant scope: only [`IsGlobal`].
#[diagnostic::on_unimplemented(
    message = "this query is not tenant-scoped, so a tenant connection will not run it",
    label = "not built from `<Model>::scoped(conn)`",
    note = "scope it: `Invoice::scoped(conn)`; insert with `Invoice::insert(conn, new)`; update or delete with `diesel::update(Invoice::scoped(conn).filter(..))`; only `#[global_table]`s are read without a scope",
    note = "for deliberate cross-tenant work, use an audited bypass: `db.bypass(no_tenant_scope!(&owner, \"reason\"), ..)`",
    note = "raw SQL (`diesel::sql_query`) runs on a tenant connection with a bypass token, audited and still inside the tenant: `conn.raw_execute(no_tenant_scope!(&job, \"reason\"), query)` or `conn.raw_load(no_tenant_scope!(&job, \"reason\"), query)`"
)]
pub trait ReadWithoutScope: TableKind {}
impl ReadWithoutScope for IsGlobal {}

/// A table shared by all tenants (declared with `#[global_table]`); read without a scope.
#[diagnostic::on_unimplemented(
    message = "this query is not tenant-scoped, so a tenant connection will not run it",
    label = "not built from `<Model>::scoped(conn)`",
    note = "scope it: `Invoice::scoped(conn)`; insert with `Invoice::insert(conn, new)`; update or delete with `diesel::update(Invoice::scoped(conn).filter(..))`; only `#[global_table]`s are read without a scope",
    note = "for deliberate cross-tenant work, use an audited bypass: `db.bypass(no_tenant_scope!(&owner, \"reason\"), ..)`",
    note = "raw SQL (`diesel::sql_query`) runs on a tenant connection with a bypass token, audited and still inside the tenant: `conn.raw_execute(no_tenant_scope!(&job, \"reason\"), query)` or `conn.raw_load(no_tenant_scope!(&job, \"reason\"), query)`"
)]
pub trait GlobalTable: Declared {}
impl<T> GlobalTable for T
where
    T: Declared,
    T::Kind: ReadWithoutScope,
{
}

/// Adds the tenant condition to a join's `ON` clause when the joined table is a tenant table.
///
/// Implemented by the two table kinds, so that joins dispatch on [`Declared::Kind`].
#[diagnostic::on_unimplemented(
    message = "cannot join `{T}` inside a tenant-scoped query",
    note = "declare the joined table with `#[tenant_table]` or `#[global_table]` and connect the two with `diesel::joinable!`"
)]
pub trait JoinScope<T, On>: TableKind {
    /// The resulting `ON` condition.
    type Output;
    /// Extends `on` so that the joined table stays inside `tenant`.
    fn scope_on(on: On, tenant: Uuid) -> Self::Output;
}

impl<T, On, C> JoinScope<T, On> for IsTenant<C>
where
    T: TenantTable,
{
    type Output = TenantJoinOn<On, T::TenantColumn>;

    fn scope_on(on: On, tenant: Uuid) -> Self::Output {
        TenantJoinOn {
            on,
            column: T::TenantColumn::default(),
            tenant,
        }
    }
}

impl<T, On> JoinScope<T, On> for IsGlobal {
    type Output = On;

    fn scope_on(on: On, _tenant: Uuid) -> On {
        on
    }
}

/// The `ON` clause of a join to a tenant table: `(<on>) AND (<rhs>.tenant_id = $tenant)`.
///
/// Built only by scoped joins; it keeps the joined rows inside the tenant even in a `LEFT JOIN`
/// (a condition in `WHERE` would turn it into an inner join).
#[derive(Debug, Clone, Copy)]
pub struct TenantJoinOn<On, C> {
    on: On,
    column: C,
    tenant: Uuid,
}

impl<On: Expression, C> Expression for TenantJoinOn<On, C> {
    type SqlType = On::SqlType;
}

impl<On, C, QS> AppearsOnTable<QS> for TenantJoinOn<On, C>
where
    On: AppearsOnTable<QS>,
    C: AppearsOnTable<QS>,
{
}

impl<On, C, QS> SelectableExpression<QS> for TenantJoinOn<On, C>
where
    On: SelectableExpression<QS>,
    C: SelectableExpression<QS>,
{
}

impl<On, C, GB> ValidGrouping<GB> for TenantJoinOn<On, C>
where
    On: ValidGrouping<GB>,
{
    type IsAggregate = On::IsAggregate;
}

impl<On: QueryId, C: QueryId> QueryId for TenantJoinOn<On, C> {
    type QueryId = TenantJoinOn<On::QueryId, C::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = On::HAS_STATIC_QUERY_ID && C::HAS_STATIC_QUERY_ID;
}

impl<On, C> QueryFragment<Pg> for TenantJoinOn<On, C>
where
    On: QueryFragment<Pg>,
    C: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("(");
        self.on.walk_ast(out.reborrow())?;
        out.push_sql(") AND (");
        self.column.walk_ast(out.reborrow())?;
        out.push_sql(" = ");
        out.push_bind_param::<diesel::sql_types::Uuid, Uuid>(&self.tenant)?;
        out.push_sql(")");
        Ok(())
    }
}
