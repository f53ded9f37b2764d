//! Table declarations: which tables are tenant-scoped and which are global.
//!
//! `#[tenant_table]` and `#[global_table]` implement these traits for the Diesel `table!` type of
//! a model; users do not implement them by hand.

use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::Table;
use uuid::Uuid;

/// Which kind of table a declared table is, used to dispatch joins without overlapping impls.
pub trait TableKind: crate::__private::Sealed {}

/// Kind of a `#[tenant_table]`.
#[derive(Debug, Clone, Copy)]
pub enum IsTenant {}
/// Kind of a `#[global_table]`.
#[derive(Debug, Clone, Copy)]
pub enum IsGlobal {}
impl crate::__private::Sealed for IsTenant {}
impl crate::__private::Sealed for IsGlobal {}
impl TableKind for IsTenant {}
impl TableKind for IsGlobal {}

/// A table declared to tenantry, either tenant-scoped or global.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not declared to tenantry",
    label = "declare its model with `#[tenant_table]` or `#[global_table]`",
    note = "every table a tenant transaction touches must be declared: `#[tenant_table(table = ..)]` for tables with a `tenant_id`, `#[global_table(table = ..)]` for shared reference data"
)]
pub trait Declared: Table + crate::__private::Sealed {
    /// [`IsTenant`] or [`IsGlobal`].
    type Kind: TableKind;
    /// What the declaration says, as [`crate::declare_tables`] applies it.
    const DECL: crate::TableDecl;
}

/// A table whose rows belong to one tenant each (declared with `#[tenant_table]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tenant table",
    label = "declare its model with `#[tenant_table(table = ..)]`",
    note = "a tenant table carries `tenant_id uuid not null` and is read through `<Model>::scoped(&ctx)`"
)]
pub trait TenantTable: Declared<Kind = IsTenant> + Default + Copy {
    /// The column that holds the owning tenant's id.
    type TenantColumn: Column<Table = Self, SqlType = diesel::sql_types::Uuid> + Default + Copy;
}

/// A table shared by all tenants (declared with `#[global_table]`); read without a scope.
#[diagnostic::on_unimplemented(
    message = "this query is not tenant-scoped, so a tenant connection will not run it",
    label = "not built from `<Model>::scoped(&ctx)`",
    note = "scope it: `Invoice::scoped(&ctx)`; insert with `Invoice::insert(&ctx, new)`; update or delete with `diesel::update(Invoice::scoped(&ctx).filter(..))`; only `#[global_table]`s are read without a scope",
    note = "for deliberate cross-tenant work, use an audited bypass: `db.bypass(no_tenant_scope!(&actor, \"reason\"), ..)`"
)]
pub trait GlobalTable: Declared<Kind = IsGlobal> {}

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

impl<T, On> JoinScope<T, On> for IsTenant
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
