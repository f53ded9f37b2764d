//! What a query on a global table may read: its table, literals, functions of them and subqueries
//! of other global tables; never a tenant table. The rule scoped queries follow, for the plain
//! (unboxed) queries on a `#[global_table]` that a tenant connection runs.
//!
//! Diesel's own clause types are private, so the check rebuilds the query's type with another
//! `FROM`: the global table joined to [`OnlyGlobalTables`], a query source in whose company every
//! global table may appear and no tenant table. A filter or selection that reads a tenant table
//! (an unscoped subquery, or a scoped one: a global query is not scoped) is then not valid, and
//! Diesel will not build the join.

use std::marker::PhantomData;

use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::internal::table_macro::Inner;
use diesel::query_dsl::InternalJoinDsl;
use diesel::query_source::{AppearsInFromClause, Never, QuerySource};

use crate::scope::table::GlobalTable;

/// A query source beside which every global table may appear, and no tenant table.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnlyGlobalTables<T>(PhantomData<T>);

/// The selection of [`OnlyGlobalTables`] and the condition of the probe's join: never rendered,
/// valid anywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoColumn;

impl Expression for NoColumn {
    type SqlType = diesel::sql_types::Bool;
}
impl<QS> AppearsOnTable<QS> for NoColumn {}
impl<T> SelectableExpression<OnlyGlobalTables<T>> for NoColumn {}
impl<GB> ValidGrouping<GB> for NoColumn {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl<T> QuerySource for OnlyGlobalTables<T> {
    type FromClause = ();
    type DefaultSelection = NoColumn;

    fn from_clause(&self) {}

    fn default_selection(&self) -> NoColumn {
        NoColumn
    }
}

impl<T, X: GlobalTable> AppearsInFromClause<X> for OnlyGlobalTables<T> {
    type Count = Never;
}

/// A query on global table `T` that reads only global tables.
#[diagnostic::on_unimplemented(
    message = "a query on a global table may read only global tables, and this one's filter or selection reads a tenant table",
    label = "a subquery over a tenant table (scoped or not) in a global query",
    note = "start from the tenant table's scoped query and join the global table: `Invoice::scoped(conn).inner_join(currencies::table).select(currencies::all_columns)`; a global query may read its own columns, literals and subqueries of other global tables"
)]
pub trait ReadsOnlyGlobalTables<T> {}

/// Diesel joins a select statement only if the joined statement is still a valid query: its
/// selection and filter valid on the new `FROM`. Joined to [`OnlyGlobalTables`] (on a condition
/// that is never rendered), that holds only if they read no tenant table.
#[diagnostic::do_not_recommend]
impl<T, Q> ReadsOnlyGlobalTables<T> for Q
where
    T: GlobalTable,
    Q: InternalJoinDsl<OnlyGlobalTables<T>, Inner, NoColumn>,
{
}
