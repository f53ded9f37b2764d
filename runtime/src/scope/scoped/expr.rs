//! The wrappers that keep a scoped query's pieces in its transaction and its table: filters
//! ([`ScopedWhere`]), expressions, `IN` subqueries, and the sources they may name.

use super::*;

/// The `WHERE` clause of an update or delete built from a scoped query.
///
/// Private fields: it exists so that tenant connections can tell a scoped update or delete
/// from an unscoped one at compile time, and so that a filter holding SQL text built at run time
/// fails the statement before it is sent.
#[derive(Debug, Clone, Copy)]
pub struct ScopedWhere<'tx, W>(
    pub(super) W,
    pub(super) Option<RuntimeSqlFragment>,
    pub(super) Brand<'tx>,
);

impl<W: QueryId> QueryId for ScopedWhere<'_, W> {
    type QueryId = W::QueryId;
    const HAS_STATIC_QUERY_ID: bool = W::HAS_STATIC_QUERY_ID;
}

impl<W: QueryFragment<Pg>> QueryFragment<Pg> for ScopedWhere<'_, W> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if let Some(refused) = self.1 {
            return Err(refused.into());
        }
        self.0.walk_ast(pass)
    }
}

/// A scoped query used as an expression (`exists()`, `single_value()`), branded with its
/// transaction.
#[derive(Debug, Clone, Copy)]
pub struct ScopedExpr<'tx, E> {
    expr: E,
    _brand: Brand<'tx>,
}

impl<E> ScopedExpr<'_, E> {
    pub(super) fn new(expr: E) -> Self {
        Self {
            expr,
            _brand: PhantomData,
        }
    }
}

impl<E: Expression> Expression for ScopedExpr<'_, E> {
    type SqlType = E::SqlType;
}

impl<E: AppearsOnTable<QS>, QS: diesel::QuerySource> AppearsOnTable<QS> for ScopedExpr<'_, E> {}

/// A scoped subquery carries the tenant condition, so it may stand where only the query's own
/// tables may be read: it appears on `FromOnly<QS>` wherever it would appear on `QS`.
impl<E: AppearsOnTable<QS>, QS> AppearsOnTable<FromOnly<QS>> for ScopedExpr<'_, E> {}

impl<E: SelectableExpression<QS>, QS: diesel::QuerySource> SelectableExpression<QS>
    for ScopedExpr<'_, E>
{
}

impl<E: ValidGrouping<GB>, GB> ValidGrouping<GB> for ScopedExpr<'_, E> {
    type IsAggregate = E::IsAggregate;
}

impl<E: QueryId> QueryId for ScopedExpr<'_, E> {
    type QueryId = E::QueryId;
    const HAS_STATIC_QUERY_ID: bool = E::HAS_STATIC_QUERY_ID;
}

impl<E: QueryFragment<Pg>> QueryFragment<Pg> for ScopedExpr<'_, E> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.expr.walk_ast(pass)
    }
}

/// A scoped query as the right-hand side of `eq_any`, branded with its transaction.
#[derive(Debug, Clone, Copy)]
pub struct ScopedSubquery<'tx, Q> {
    pub(super) query: Q,
    pub(super) _brand: Brand<'tx>,
}

impl<'tx, Q, ST> AsInExpression<ST> for ScopedSubquery<'tx, Q>
where
    ST: SqlType,
    Q: AsInExpression<ST>,
{
    type InExpression = ScopedIn<'tx, Q::InExpression>;

    fn as_in_expression(self) -> Self::InExpression {
        ScopedIn {
            inner: self.query.as_in_expression(),
            _brand: PhantomData,
        }
    }
}

/// The right-hand side of `eq_any(<scoped subquery>)`: Diesel's `IN (subquery)`, branded and
/// declared valid where only the query's own tables may be read ([`FromOnly`]).
#[derive(Debug, Clone, Copy)]
pub struct ScopedIn<'tx, I> {
    pub(super) inner: I,
    pub(super) _brand: Brand<'tx>,
}

impl<I: Expression> Expression for ScopedIn<'_, I> {
    type SqlType = I::SqlType;
}

impl<I: InExpression> InExpression for ScopedIn<'_, I> {
    type SqlType = <I as InExpression>::SqlType;
    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
    fn is_array(&self) -> bool {
        self.inner.is_array()
    }
}

impl<I: AppearsOnTable<QS>, QS: diesel::QuerySource> AppearsOnTable<QS> for ScopedIn<'_, I> {}
impl<I: AppearsOnTable<QS>, QS> AppearsOnTable<FromOnly<QS>> for ScopedIn<'_, I> {}
impl<I: SelectableExpression<QS>, QS: diesel::QuerySource> SelectableExpression<QS>
    for ScopedIn<'_, I>
{
}

impl<I: ValidGrouping<GB>, GB> ValidGrouping<GB> for ScopedIn<'_, I> {
    type IsAggregate = I::IsAggregate;
}

impl<I: QueryId> QueryId for ScopedIn<'_, I> {
    type QueryId = I::QueryId;
    const HAS_STATIC_QUERY_ID: bool = I::HAS_STATIC_QUERY_ID;
}

impl<I: QueryFragment<Pg>> QueryFragment<Pg> for ScopedIn<'_, I> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.inner.walk_ast(pass)
    }
}

/// The tables of the `FROM` clause `QS`, and nothing else: not a query source, so Diesel
/// declares no subquery valid on it (a subquery validates against a query source), while the
/// columns of `QS`'s tables, literals and functions of them appear on it as they do on `QS`.
/// What a scoped filter and an update's value are checked against; scoped subqueries
/// ([`ScopedExpr`], [`ScopedIn`]) are declared valid on it since they carry the tenant
/// condition.
#[derive(Debug, Clone, Copy)]
pub struct FromOnly<QS>(PhantomData<QS>);

impl<T, QS> AppearsInFromClause<T> for FromOnly<QS>
where
    QS: AppearsInFromClause<T>,
{
    type Count = QS::Count;
}

/// The `FROM` clause of a scoped query's select statement (what its filters may read).
pub trait ScopedSource {
    /// The tables of the `FROM` clause (a table or a join).
    type From;
}

impl<F: diesel::QuerySource, S, D, W, O, LOf, G, H, LC> ScopedSource
    for SelectStatement<FromClause<F>, S, D, W, O, LOf, G, H, LC>
{
    type From = F;
}

impl<'a, ST, F: diesel::QuerySource, GB> ScopedSource
    for BoxedSelectStatement<'a, ST, FromClause<F>, Pg, GB>
{
    type From = F;
}

/// What a scoped query's filter may be: an expression over the query's own tables (columns,
/// literals, functions of them) which may contain scoped subqueries but no other subquery.
#[diagnostic::on_unimplemented(
    message = "a scoped query's filter, selection or order may read only its own tables and scoped subqueries",
    label = "this expression reads something else (an unscoped subquery would read every tenant's rows)",
    note = "scope the subquery: `Project::scoped(conn).select(projects::id).subquery()` for `eq_any`, `.exists()`, `.single_value()`"
)]
pub trait FilterValue<From> {}

#[diagnostic::do_not_recommend]
impl<P, From> FilterValue<From> for P where P: AppearsOnTable<FromOnly<From>> {}

impl<Q: QueryId> QueryId for ScopedSubquery<'_, Q> {
    type QueryId = Q::QueryId;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

/// Renders the subquery (for `diesel::debug_query`).
impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for ScopedSubquery<'_, Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(pass)
    }
}
