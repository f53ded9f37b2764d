//! `Scoped<'tx, Q>`: a query that carries `WHERE tenant_id = $tenant`, belongs to one tenant
//! transaction, and offers only narrowing operations.
//!
//! Built by `<Model>::scoped(conn)` from the transaction's [`TenantConn`]. It forwards `filter`,
//! `order`, `then_order_by`, `limit`, `offset`, `select`, `distinct`, `count`, `into_boxed`,
//! `inner_join` and `left_join` to Diesel, and nothing that could widen the result: there is no
//! `or_filter`. `.filter(a.or(b))` stays safe because Diesel parenthesises the predicate, giving
//! `tenant_id = $1 AND (a OR b)`.
//!
//! The lifetime `'tx` is the transaction's: a scoped query (and its `subquery()`, `exists()` and
//! `single_value()`) cannot leave the transaction closure nor run on another connection.

use std::fmt;
use std::marker::PhantomData;
use std::panic::Location;

use diesel::associations::HasTable;
use diesel::dsl::CountStar;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::internal::derives::multiconnection::array_comparison::{AsInExpression, InExpression};
use diesel::internal::table_macro::{BoxedSelectStatement, FromClause, SelectStatement};
use diesel::internal::table_macro::{Inner, LeftOuter};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, IntoUpdateTarget, QueryFragment, QueryId, UpdateTarget};
use diesel::query_dsl::methods::{
    BoxedDsl, DistinctDsl, FilterDsl, LimitDsl, OffsetDsl, OrderDsl, SelectDsl, SingleValueDsl,
    ThenOrderDsl,
};
use diesel::query_dsl::InternalJoinDsl;
use diesel::query_source::AppearsInFromClause;
use diesel::query_source::{Column, JoinTo};
use diesel::sql_types::SqlType;
use diesel::QueryResult;
use uuid::Uuid;

use crate::ctx::conn::{Brand, TenantConn};
use crate::ctx::{Access, ReadWrite};
use crate::scope::fragment::{refusal, FragmentPlace, RuntimeSqlFragment};
use crate::scope::table::{Declared, JoinScope};

/// A query kept inside one tenant and one transaction. Private fields: only
/// `<Model>::scoped(conn)` makes one.
#[must_use = "queries do nothing until run on a tenant connection: `.load(conn).await`"]
pub struct Scoped<'tx, Q, A: Access = ReadWrite> {
    query: Q,
    tenant: Uuid,
    /// The first filter, selection or order that holds SQL text built at run time: the tenant
    /// connection refuses to run the query (see [`crate::scope::fragment`]). Kept when a later
    /// `.order(..)` or `.select(..)` replaces that clause: the code still builds the fragment.
    refused: Option<RuntimeSqlFragment>,
    _brand: Brand<'tx>,
    _access: PhantomData<fn() -> A>,
}

impl<Q: Clone, A: Access> Clone for Scoped<'_, Q, A> {
    fn clone(&self) -> Self {
        Self {
            query: self.query.clone(),
            tenant: self.tenant,
            refused: self.refused,
            _brand: PhantomData,
            _access: PhantomData,
        }
    }
}

impl<Q: fmt::Debug, A: Access> fmt::Debug for Scoped<'_, Q, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("tenant", &self.tenant)
            .field("query", &self.query)
            .field("refused", &self.refused)
            .finish()
    }
}

/// The query `<Model>::scoped(conn)` starts from, for table `T` with tenant column `C`:
/// `SELECT .. FROM t WHERE t.<C> = $tenant`.
pub type ScopedFrom<T, C> = diesel::dsl::Filter<T, diesel::dsl::Eq<C, Uuid>>;

/// Starts a scoped query on table `T`, whose tenant column is `C`, inside `conn`'s transaction
/// (what `<Model>::scoped(conn)` calls).
pub fn scoped<'tx, T, C, A>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<T, C>, A>
where
    T: Default + FilterDsl<diesel::dsl::Eq<C, Uuid>>,
    C: Column + Default,
    C::SqlType: SqlType + diesel::sql_types::SingleValue,
    Uuid: diesel::expression::AsExpression<C::SqlType>,
    A: Access,
{
    use diesel::ExpressionMethods;
    let tenant = conn.tenant_id();
    Scoped {
        query: FilterDsl::filter(T::default(), C::default().eq(tenant)),
        tenant,
        refused: None,
        _brand: PhantomData,
        _access: PhantomData,
    }
}

impl<'tx, Q, A: Access> Scoped<'tx, Q, A> {
    fn map<R>(self, f: impl FnOnce(Q) -> R) -> Scoped<'tx, R, A> {
        Scoped {
            query: f(self.query),
            tenant: self.tenant,
            refused: self.refused,
            _brand: PhantomData,
            _access: PhantomData,
        }
    }

    /// Keeps the first refusal: `expr`, taken at `place` on the caller's line, if it holds SQL
    /// text built at run time.
    fn check<E>(mut self, expr: &E, place: FragmentPlace, at: &'static Location<'static>) -> Self
    where
        E: QueryFragment<Pg> + QueryId,
    {
        if self.refused.is_none() {
            self.refused = refusal(expr, place, at);
        }
        self
    }

    /// The tenant this query is kept inside.
    pub fn tenant_id(&self) -> Uuid {
        self.tenant
    }

    /// Narrows the query: `WHERE tenant_id = $tenant AND (<predicate>)`.
    ///
    /// The predicate reads the query's own tables, literals and functions of them, and scoped
    /// subqueries of the same transaction (`subquery()`, `exists()`, `single_value()`): an
    /// unscoped subquery over a table does not compile.
    ///
    /// SQL text built at run time (`diesel::dsl::sql(&format!(..))`) in the predicate makes the
    /// tenant connection refuse the query before sending it; write a fragment with
    /// `tenantry::sql!("..")`.
    #[track_caller]
    pub fn filter<P>(self, predicate: P) -> Scoped<'tx, diesel::dsl::Filter<Q, P>, A>
    where
        Q: FilterDsl<P> + ScopedSource,
        P: FilterValue<Q::From> + QueryFragment<Pg> + QueryId,
    {
        self.check(&predicate, FragmentPlace::Filter, Location::caller())
            .map(|q| q.filter(predicate))
    }

    /// Sets the `ORDER BY` clause (over the query's own tables and scoped subqueries, like a
    /// filter).
    #[track_caller]
    pub fn order<O>(self, order: O) -> Scoped<'tx, diesel::dsl::Order<Q, O>, A>
    where
        O: Expression + FilterValue<Q::From> + QueryFragment<Pg> + QueryId,
        Q: OrderDsl<O> + ScopedSource,
    {
        self.check(&order, FragmentPlace::Order, Location::caller())
            .map(|q| q.order(order))
    }

    /// Alias of [`Scoped::order`], as in Diesel.
    #[track_caller]
    pub fn order_by<O>(self, order: O) -> Scoped<'tx, diesel::dsl::Order<Q, O>, A>
    where
        O: Expression + FilterValue<Q::From> + QueryFragment<Pg> + QueryId,
        Q: OrderDsl<O> + ScopedSource,
    {
        self.order(order)
    }

    /// Appends to the `ORDER BY` clause.
    #[track_caller]
    pub fn then_order_by<O>(self, order: O) -> Scoped<'tx, diesel::dsl::ThenOrderBy<Q, O>, A>
    where
        O: FilterValue<Q::From> + QueryFragment<Pg> + QueryId,
        Q: ThenOrderDsl<O> + ScopedSource,
    {
        self.check(&order, FragmentPlace::Order, Location::caller())
            .map(|q| q.then_order_by(order))
    }

    /// Sets `LIMIT`.
    pub fn limit(self, limit: i64) -> Scoped<'tx, diesel::dsl::Limit<Q>, A>
    where
        Q: LimitDsl,
    {
        self.map(|q| q.limit(limit))
    }

    /// Sets `OFFSET`.
    pub fn offset(self, offset: i64) -> Scoped<'tx, diesel::dsl::Offset<Q>, A>
    where
        Q: OffsetDsl,
    {
        self.map(|q| q.offset(offset))
    }

    /// Chooses the selected columns (of the query's own tables; a subquery in the selection
    /// must be a scoped one, like in a filter).
    #[track_caller]
    pub fn select<S>(self, selection: S) -> Scoped<'tx, diesel::dsl::Select<Q, S>, A>
    where
        S: Expression + FilterValue<Q::From> + QueryFragment<Pg> + QueryId,
        Q: SelectDsl<S> + ScopedSource,
    {
        self.check(&selection, FragmentPlace::Selection, Location::caller())
            .map(|q| q.select(selection))
    }

    /// `SELECT DISTINCT`.
    pub fn distinct(self) -> Scoped<'tx, diesel::dsl::Distinct<Q>, A>
    where
        Q: DistinctDsl,
    {
        self.map(|q| q.distinct())
    }

    /// `SELECT COUNT(*)` of the scoped rows; load it with `.get_result::<i64>(conn)`.
    pub fn count(self) -> Scoped<'tx, diesel::dsl::Select<Q, CountStar>, A>
    where
        Q: SelectDsl<CountStar>,
    {
        self.map(|q| q.select(diesel::dsl::count_star()))
    }

    /// Boxes the query so that filters can be added at run time (dynamic filters).
    pub fn into_boxed<'a>(self) -> Scoped<'tx, diesel::dsl::IntoBoxed<'a, Q, Pg>, A>
    where
        Q: BoxedDsl<'a, Pg>,
    {
        self.map(|q| q.internal_into_boxed())
    }

    /// `INNER JOIN rhs ON <joinable!> [AND rhs.tenant_id = $tenant]`.
    ///
    /// A joined tenant table is scoped in the `ON` clause; a joined global table is not. Joins
    /// follow `joinable!`: pass the table itself (`.inner_join(projects::table)`).
    pub fn inner_join<R>(self, rhs: R) -> Scoped<'tx, ScopedJoin<Q, R, Inner>, A>
    where
        R: Declared,
        Q: JoinTo<R>,
        R::Kind: JoinScope<R, <Q as JoinTo<R>>::OnClause>,
        Q: InternalJoinDsl<<Q as JoinTo<R>>::FromClause, Inner, ScopedOn<Q, R>>,
    {
        let tenant = self.tenant;
        self.map(|q| {
            let (from, on) = <Q as JoinTo<R>>::join_target(rhs);
            let on = <R::Kind as JoinScope<R, _>>::scope_on(on, tenant);
            q.join(from, Inner, on)
        })
    }

    /// `LEFT OUTER JOIN rhs ON <joinable!> [AND rhs.tenant_id = $tenant]`.
    ///
    /// The tenant condition sits in the `ON` clause, so rows of the left table without a match
    /// in this tenant still appear (with `NULL`s), and rows of other tenants never do.
    pub fn left_join<R>(self, rhs: R) -> Scoped<'tx, ScopedJoin<Q, R, LeftOuter>, A>
    where
        R: Declared,
        Q: JoinTo<R>,
        R::Kind: JoinScope<R, <Q as JoinTo<R>>::OnClause>,
        Q: InternalJoinDsl<<Q as JoinTo<R>>::FromClause, LeftOuter, ScopedOn<Q, R>>,
    {
        let tenant = self.tenant;
        self.map(|q| {
            let (from, on) = <Q as JoinTo<R>>::join_target(rhs);
            let on = <R::Kind as JoinScope<R, _>>::scope_on(on, tenant);
            q.join(from, LeftOuter, on)
        })
    }

    /// `EXISTS (<this scoped query>)`, for use inside another scoped query's filter of the same
    /// transaction.
    pub fn exists(self) -> ScopedExpr<'tx, diesel::dsl::exists<Q>> {
        ScopedExpr::new(diesel::dsl::exists(self.query))
    }

    /// `(<this scoped query> LIMIT 1)` as a nullable value, for a filter or an update's value:
    /// `invoices::number.to(Invoice::scoped(conn).select(..).single_value())`.
    pub fn single_value(self) -> ScopedExpr<'tx, diesel::dsl::SingleValue<Q>>
    where
        Q: SingleValueDsl,
    {
        ScopedExpr::new(self.query.single_value())
    }

    /// The query as a subquery for `eq_any` in another scoped query of the same transaction:
    /// `invoices::project_id.eq_any(Project::scoped(conn).select(projects::id).subquery())`.
    ///
    /// The subquery still carries `tenant_id = $tenant`, and no tenant connection runs it on its
    /// own: it is only usable inside an expression.
    pub fn subquery(self) -> ScopedSubquery<'tx, Q> {
        ScopedSubquery {
            query: self.query,
            _brand: PhantomData,
        }
    }

    /// Not available: `or_filter` would turn `tenant_id = $1 AND a` into `tenant_id = $1 OR b`.
    ///
    /// Put the alternatives inside one filter instead: `.filter(a.or(b))`, which Diesel
    /// parenthesises. This method exists only to say so at compile time.
    #[doc(hidden)]
    pub fn or_filter<P>(self, _predicate: P) -> Self
    where
        P: NoWidening,
    {
        self
    }

    pub(crate) fn into_query(self) -> Q {
        self.query
    }

    /// Why the tenant connection will not run this query, if it holds SQL text built at run
    /// time.
    pub(crate) fn refused(&self) -> Option<RuntimeSqlFragment> {
        self.refused
    }
}

/// The `ON` clause of a scoped join of `R` onto `Q`.
pub type ScopedOn<Q, R> =
    <<R as Declared>::Kind as JoinScope<R, <Q as JoinTo<R>>::OnClause>>::Output;

/// The query type of a scoped join.
pub type ScopedJoin<Q, R, Kind> =
    <Q as InternalJoinDsl<<Q as JoinTo<R>>::FromClause, Kind, ScopedOn<Q, R>>>::Output;

impl<Q: HasTable, A: Access> HasTable for Scoped<'_, Q, A> {
    type Table = Q::Table;

    fn table() -> Self::Table {
        Q::table()
    }
}

/// `diesel::update(<Model>::scoped(conn).filter(..))` and `diesel::delete(..)` keep the tenant
/// condition: the `WHERE` clause is wrapped in [`ScopedWhere`], which only a scoped query yields.
/// (A read-only transaction's connection will not run the update or delete.)
impl<'tx, Q: IntoUpdateTarget, A: Access> IntoUpdateTarget for Scoped<'tx, Q, A> {
    type WhereClause = ScopedWhere<'tx, Q::WhereClause>;

    fn into_update_target(self) -> UpdateTarget<Self::Table, Self::WhereClause> {
        let refused = self.refused;
        let UpdateTarget {
            table,
            where_clause,
        } = self.query.into_update_target();
        UpdateTarget {
            table,
            where_clause: ScopedWhere(where_clause, refused, PhantomData),
        }
    }
}

/// The `WHERE` clause of an update or delete built from a scoped query.
///
/// Private fields: it exists so that tenant connections can tell a scoped update or delete
/// from an unscoped one at compile time, and so that a filter holding SQL text built at run time
/// fails the statement before it is sent.
#[derive(Debug, Clone, Copy)]
pub struct ScopedWhere<'tx, W>(W, Option<RuntimeSqlFragment>, Brand<'tx>);

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
    fn new(expr: E) -> Self {
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
    query: Q,
    _brand: Brand<'tx>,
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
    inner: I,
    _brand: Brand<'tx>,
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

/// Diesel's `QueryDsl`, so that its methods called by path (`QueryDsl::or_filter(scoped, ..)`)
/// end in tenantry's messages rather than an overflow: a scoped query implements none of the
/// traits behind them but [`diesel::query_dsl::methods::OrFilterDsl`], whose bound refuses.
/// Its own methods (`filter`, `select`, ..) come first for `scoped.method(..)`.
impl<Q, A: Access> diesel::QueryDsl for Scoped<'_, Q, A> {}

/// `QueryDsl::or_filter(scoped, ..)`: refused like [`Scoped::or_filter`].
impl<Q, A: Access, P: NoWidening> diesel::query_dsl::methods::OrFilterDsl<P> for Scoped<'_, Q, A> {
    type Output = Self;

    fn or_filter(self, _predicate: P) -> Self {
        self
    }
}

/// Never implemented: carries the compile error of [`Scoped::or_filter`].
#[diagnostic::on_unimplemented(
    message = "`or_filter` is not available on a tenant-scoped query: it would widen it to other tenants",
    label = "`tenant_id = $1 OR ..` would match other tenants' rows",
    note = "put the alternatives inside one filter, which keeps the tenant condition: `.filter(a.or(b))`"
)]
pub trait NoWidening: crate::scope::table::sealed::Sealed {}
