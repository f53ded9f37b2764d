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
mod expr;
pub use expr::{
    FilterValue, FromOnly, ScopedExpr, ScopedIn, ScopedSource, ScopedSubquery, ScopedWhere,
};

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
