//! The changes of a scoped update or upsert: `column.to(value)` and `#[derive(AsChangeset)]`
//! (tenantry's), whose columns tenantry can see, so that setting the tenant column does not
//! compile.
//!
//! Diesel's own `.set(column.eq(value))` builds assignment types that are private to Diesel, so
//! no trait can tell which column they set. tenantry's assignment, [`Set`], is its own type: a
//! scoped update takes only changes made of it ([`CheckedChanges`]), and [`Set`] can only be made
//! for a column that is not the tenant column.

use std::panic::Location;

use diesel::expression::{
    is_aggregate, AppearsOnTable, AsExpression, Expression, IsContainedInGroupBy,
    TypedExpressionType, ValidGrouping,
};
use diesel::pg::Pg;
use diesel::query_builder::{AsChangeset, AstPass, QueryFragment, QueryId};
use diesel::query_source::Column;
use diesel::query_source::{AppearsInFromClause, Once};

use crate::scope::scoped::FromOnly;
use diesel::sql_types::SqlType;
use diesel::QueryResult;

use crate::scope::columns::{Both, NotTheTenantColumn, SameColumn};
use crate::scope::fragment::{refusal, FragmentPlace, RuntimeSqlFragment};
use crate::scope::table::{Declared, IsGlobal, IsTenant};

/// One assignment of a scoped update: `"column" = value`. Made by [`SetColumn::to`].
#[derive(Debug, Clone, Copy)]
#[must_use = "an assignment does nothing until passed to `.set(..)`"]
pub struct Set<C, E> {
    column: C,
    value: E,
    /// Set when the value holds SQL text built at run time: the statement fails before it is
    /// sent (see [`crate::scope::fragment`]).
    refused: Option<RuntimeSqlFragment>,
}

/// `column.to(value)`: the assignment a scoped update's `.set(..)` takes (in the prelude).
pub trait SetColumn: Column + Sized {
    /// Assigns `value` to this column: `.set((invoices::status.to("paid"), invoices::amount_cents.to(0)))`.
    ///
    /// The tenant column of a tenant table cannot be assigned: that would move the row to
    /// another tenant. The value reads only the updated row (literals, its columns, arithmetic
    /// and functions of them, [`excluded`] in an upsert) or a scoped subquery of the same
    /// transaction (`Project::scoped(conn).select(..).single_value()`): an unscoped subquery
    /// over a table does not compile. SQL text built at run time (`diesel::dsl::sql`) in the
    /// value makes the statement fail before it is sent; write a fragment with
    /// `tenantry::sql!(Text, "..")`.
    #[track_caller]
    fn to<V>(self, value: V) -> Set<Self, V::Expression>
    where
        Self::SqlType: SqlType + TypedExpressionType,
        V: AsExpression<Self::SqlType>,
        V::Expression: UpdateValue<Self::Table> + QueryFragment<Pg> + QueryId,
        Self::Table: Declared,
        <Self::Table as Declared>::Kind: Assignable<Self>,
    {
        let value = value.as_expression();
        Set {
            refused: refusal(&value, FragmentPlace::UpdateValue, Location::caller()),
            column: self,
            value,
        }
    }
}

impl<C: Column> SetColumn for C {}

/// What an update's value may be: an expression over the updated row of table `T` (its
/// columns, literals, functions of them) which may contain scoped subqueries
/// ([`crate::scope::Scoped::single_value`]) but no other subquery.
#[diagnostic::on_unimplemented(
    message = "an update's value may read only the updated row and scoped subqueries",
    label = "this value reads something else (an unscoped subquery would read every tenant's rows)",
    note = "scope the subquery: `Project::scoped(conn).select(projects::name).single_value()`; in an upsert, the proposed row is `tenantry::excluded(column)`"
)]
pub trait UpdateValue<T> {}

#[diagnostic::do_not_recommend]
impl<E, T> UpdateValue<T> for E where E: AppearsOnTable<FromOnly<T>> {}

/// `excluded.<column>`: in a scoped upsert's `DO UPDATE`, the value the insert proposed.
pub fn excluded<C: Column>(column: C) -> Excluded<C> {
    Excluded(column)
}

/// The value of `column` in the row an upsert proposed (`excluded."column"`). Made by
/// [`excluded`].
#[derive(Debug, Clone, Copy)]
pub struct Excluded<C>(C);

impl<C: Column> Expression for Excluded<C> {
    type SqlType = C::SqlType;
}

impl<C: Column, QS> AppearsOnTable<QS> for Excluded<C> where
    QS: AppearsInFromClause<C::Table, Count = Once>
{
}

impl<C, GB> ValidGrouping<GB> for Excluded<C> {
    type IsAggregate = is_aggregate::Never;
}

impl<C: QueryId> QueryId for Excluded<C> {
    type QueryId = Excluded<C::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = C::HAS_STATIC_QUERY_ID;
}

impl<C: Column> QueryFragment<Pg> for Excluded<C> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("excluded.");
        out.push_identifier(C::NAME)
    }
}

/// Which columns of a table of this kind may be assigned: every column of a global table, every
/// column but the tenant column of a tenant table.
#[diagnostic::on_unimplemented(
    message = "a tenant-scoped write cannot set the tenant column `{C}`",
    label = "this would move the row to another tenant",
    note = "the tenant column is set once, from the transaction's tenant, when the row is inserted (`Model::insert(conn, new)`); to move data between tenants, copy it with an audited job"
)]
pub trait Assignable<C>: crate::scope::table::TableKind {}

impl<C> Assignable<C> for IsGlobal {}

impl<C, T> Assignable<C> for IsTenant<T>
where
    C: IsContainedInGroupBy<T>,
    T: IsContainedInGroupBy<C>,
    <C as IsContainedInGroupBy<T>>::Output: Both<<T as IsContainedInGroupBy<C>>::Output>,
    SameColumn<C, T>: NotTheTenantColumn,
{
}

impl<C, E> AsChangeset for Set<C, E>
where
    C: Column,
    E: Expression + AppearsOnTable<C::Table>,
{
    type Target = C::Table;
    type Changeset = Set<C, E>;

    fn as_changeset(self) -> Self::Changeset {
        self
    }
}

impl<C: Column, E: QueryFragment<Pg>> QueryFragment<Pg> for Set<C, E> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if let Some(refused) = self.refused {
            return Err(refused.into());
        }
        let _ = &self.column;
        out.push_identifier(C::NAME)?;
        out.push_sql(" = ");
        self.value.walk_ast(out.reborrow())
    }
}

impl<C: QueryId, E: QueryId> QueryId for Set<C, E> {
    type QueryId = Set<C::QueryId, E::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = C::HAS_STATIC_QUERY_ID && E::HAS_STATIC_QUERY_ID;
}

/// Changes whose columns tenantry checked: [`Set`]s, optional ones, and tuples of them (what
/// `.set(..)` of a scoped update or upsert takes).
#[diagnostic::on_unimplemented(
    message = "tenantry cannot see which columns these changes set, so a tenant connection will not run this update",
    label = "Diesel's `.eq(..)` assignments and `#[derive(diesel::AsChangeset)]` hide their columns",
    note = "write each change as `column.to(value)`: `.set((invoices::status.to(\"paid\"), invoices::amount_cents.to(0)))`; for a struct of changes, derive tenantry's `AsChangeset` (in `tenantry::prelude`)",
    note = "tenantry checks the columns so that no scoped write can set the tenant column"
)]
pub trait CheckedChanges {}

impl<C, E> CheckedChanges for Set<C, E> {}
impl<T: CheckedChanges> CheckedChanges for Option<T> {}

macro_rules! checked_tuples {
    ($($t:ident),+) => {
        impl<$($t: CheckedChanges),+> CheckedChanges for ($($t,)+) {}
    };
}

macro_rules! all_checked_tuples {
    ($head:ident $(, $tail:ident)*) => { all_checked_tuples!(@ [$head] $($tail),*); };
    (@ [$($done:ident),+] $next:ident $(, $rest:ident)*) => {
        checked_tuples!($($done),+);
        all_checked_tuples!(@ [$($done,)+ $next] $($rest),*);
    };
    (@ [$($done:ident),+]) => { checked_tuples!($($done),+); };
}

all_checked_tuples!(
    S1, S2, S3, S4, S5, S6, S7, S8, S9, S10, S11, S12, S13, S14, S15, S16, S17, S18, S19, S20, S21,
    S22, S23, S24, S25, S26, S27, S28, S29, S30, S31, S32
);
