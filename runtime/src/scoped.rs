//! `Scoped<Q>`: a query that carries `WHERE tenant_id = $ctx` and offers only narrowing operations.
//!
//! Built by `<Model>::scoped(&ctx)`. It forwards `filter`, `order`, `then_order_by`, `limit`,
//! `offset`, `select`, `distinct`, `count`, `into_boxed`, `inner_join` and `left_join` to Diesel,
//! and nothing that could widen the result: there is no `or_filter`. `.filter(a.or(b))` stays
//! safe because Diesel parenthesises the predicate, giving `tenant_id = $1 AND (a OR b)`.

use diesel::associations::HasTable;
use diesel::dsl::CountStar;
use diesel::expression::Expression;
use diesel::internal::table_macro::{Inner, LeftOuter};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, IntoUpdateTarget, QueryFragment, QueryId, UpdateTarget};
use diesel::query_dsl::methods::{
    BoxedDsl, DistinctDsl, FilterDsl, LimitDsl, OffsetDsl, OrderDsl, SelectDsl, ThenOrderDsl,
};
use diesel::query_dsl::InternalJoinDsl;
use diesel::query_source::JoinTo;
use diesel::QueryResult;
use uuid::Uuid;

use crate::ctx::{Access, TenantCtx};
use crate::table::{Declared, JoinScope, TenantTable};

/// A query kept inside one tenant. Private fields: only `<Model>::scoped(&ctx)` makes one.
#[derive(Debug, Clone, Copy)]
#[must_use = "queries do nothing until run on a tenant connection: `.load(conn).await`"]
pub struct Scoped<Q> {
    query: Q,
    tenant: Uuid,
}

/// The query `<Model>::scoped(&ctx)` starts from: `SELECT .. FROM t WHERE t.tenant_id = $ctx`.
pub type ScopedTable<T> =
    diesel::dsl::Filter<T, diesel::dsl::Eq<<T as TenantTable>::TenantColumn, Uuid>>;

/// Starts a scoped query on tenant table `T` (what `<Model>::scoped(&ctx)` calls).
pub fn scoped<T, A>(ctx: &TenantCtx<A>) -> Scoped<ScopedTable<T>>
where
    T: TenantTable + FilterDsl<diesel::dsl::Eq<<T as TenantTable>::TenantColumn, Uuid>>,
    A: Access,
{
    use diesel::ExpressionMethods;
    let tenant = ctx.tenant_id();
    Scoped {
        query: FilterDsl::filter(T::default(), T::TenantColumn::default().eq(tenant)),
        tenant,
    }
}

impl<Q> Scoped<Q> {
    fn map<R>(self, f: impl FnOnce(Q) -> R) -> Scoped<R> {
        Scoped {
            query: f(self.query),
            tenant: self.tenant,
        }
    }

    /// The tenant this query is kept inside.
    pub fn tenant_id(&self) -> Uuid {
        self.tenant
    }

    /// Narrows the query: `WHERE tenant_id = $ctx AND (<predicate>)`.
    pub fn filter<P>(self, predicate: P) -> Scoped<diesel::dsl::Filter<Q, P>>
    where
        Q: FilterDsl<P>,
    {
        self.map(|q| q.filter(predicate))
    }

    /// Sets the `ORDER BY` clause.
    pub fn order<O>(self, order: O) -> Scoped<diesel::dsl::Order<Q, O>>
    where
        O: Expression,
        Q: OrderDsl<O>,
    {
        self.map(|q| q.order(order))
    }

    /// Alias of [`Scoped::order`], as in Diesel.
    pub fn order_by<O>(self, order: O) -> Scoped<diesel::dsl::Order<Q, O>>
    where
        O: Expression,
        Q: OrderDsl<O>,
    {
        self.order(order)
    }

    /// Appends to the `ORDER BY` clause.
    pub fn then_order_by<O>(self, order: O) -> Scoped<diesel::dsl::ThenOrderBy<Q, O>>
    where
        Q: ThenOrderDsl<O>,
    {
        self.map(|q| q.then_order_by(order))
    }

    /// Sets `LIMIT`.
    pub fn limit(self, limit: i64) -> Scoped<diesel::dsl::Limit<Q>>
    where
        Q: LimitDsl,
    {
        self.map(|q| q.limit(limit))
    }

    /// Sets `OFFSET`.
    pub fn offset(self, offset: i64) -> Scoped<diesel::dsl::Offset<Q>>
    where
        Q: OffsetDsl,
    {
        self.map(|q| q.offset(offset))
    }

    /// Chooses the selected columns.
    pub fn select<S>(self, selection: S) -> Scoped<diesel::dsl::Select<Q, S>>
    where
        S: Expression,
        Q: SelectDsl<S>,
    {
        self.map(|q| q.select(selection))
    }

    /// `SELECT DISTINCT`.
    pub fn distinct(self) -> Scoped<diesel::dsl::Distinct<Q>>
    where
        Q: DistinctDsl,
    {
        self.map(|q| q.distinct())
    }

    /// `SELECT COUNT(*)` of the scoped rows; load it with `.get_result::<i64>(conn)`.
    pub fn count(self) -> Scoped<diesel::dsl::Select<Q, CountStar>>
    where
        Q: SelectDsl<CountStar>,
    {
        self.map(|q| q.select(diesel::dsl::count_star()))
    }

    /// Boxes the query so that filters can be added at run time (dynamic filters).
    pub fn into_boxed<'a>(self) -> Scoped<diesel::dsl::IntoBoxed<'a, Q, Pg>>
    where
        Q: BoxedDsl<'a, Pg>,
    {
        self.map(|q| q.internal_into_boxed())
    }

    /// `INNER JOIN rhs ON <joinable!> [AND rhs.tenant_id = $ctx]`.
    ///
    /// A joined tenant table is scoped in the `ON` clause; a joined global table is not.
    pub fn inner_join<R>(self, rhs: R) -> Scoped<ScopedJoin<Q, R, Inner>>
    where
        Q: JoinTo<R>,
        R: Declared,
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

    /// `LEFT OUTER JOIN rhs ON <joinable!> [AND rhs.tenant_id = $ctx]`.
    ///
    /// The tenant condition sits in the `ON` clause, so rows of the left table without a match
    /// in this tenant still appear (with `NULL`s), and rows of other tenants never do.
    pub fn left_join<R>(self, rhs: R) -> Scoped<ScopedJoin<Q, R, LeftOuter>>
    where
        Q: JoinTo<R>,
        R: Declared,
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

    /// `EXISTS (<this scoped query>)`, for use inside another scoped query's filter.
    pub fn exists(self) -> diesel::dsl::exists<Q> {
        diesel::dsl::exists(self.query)
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

    /// The query as a subquery for another scoped query's filter:
    /// `invoices::project_id.eq_any(Project::scoped(&ctx).select(projects::id).subquery())`.
    ///
    /// The result still carries `tenant_id = $ctx`, and no tenant connection runs it on its own:
    /// it is only usable inside an expression.
    pub fn subquery(self) -> Q {
        self.query
    }

    pub(crate) fn into_query(self) -> Q {
        self.query
    }
}

/// The `ON` clause of a scoped join of `R` onto `Q`.
pub type ScopedOn<Q, R> =
    <<R as Declared>::Kind as JoinScope<R, <Q as JoinTo<R>>::OnClause>>::Output;

/// The query type of a scoped join.
pub type ScopedJoin<Q, R, Kind> =
    <Q as InternalJoinDsl<<Q as JoinTo<R>>::FromClause, Kind, ScopedOn<Q, R>>>::Output;

impl<Q: HasTable> HasTable for Scoped<Q> {
    type Table = Q::Table;

    fn table() -> Self::Table {
        Q::table()
    }
}

/// `diesel::update(<Model>::scoped(&ctx).filter(..))` and `diesel::delete(..)` keep the tenant
/// condition: the `WHERE` clause is wrapped in [`ScopedWhere`], which only a scoped query yields.
impl<Q: IntoUpdateTarget> IntoUpdateTarget for Scoped<Q> {
    type WhereClause = ScopedWhere<Q::WhereClause>;

    fn into_update_target(self) -> UpdateTarget<Self::Table, Self::WhereClause> {
        let UpdateTarget {
            table,
            where_clause,
        } = self.query.into_update_target();
        UpdateTarget {
            table,
            where_clause: ScopedWhere(where_clause),
        }
    }
}

/// The `WHERE` clause of an update or delete built from a scoped query.
///
/// Private field: it exists only so that tenant connections can tell a scoped update or delete
/// from an unscoped one at compile time.
#[derive(Debug, Clone, Copy)]
pub struct ScopedWhere<W>(W);

impl<W: QueryId> QueryId for ScopedWhere<W> {
    type QueryId = W::QueryId;
    const HAS_STATIC_QUERY_ID: bool = W::HAS_STATIC_QUERY_ID;
}

impl<W: QueryFragment<Pg>> QueryFragment<Pg> for ScopedWhere<W> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }
}

/// Never implemented: carries the compile error of [`Scoped::or_filter`].
#[diagnostic::on_unimplemented(
    message = "`or_filter` is not available on a tenant-scoped query: it would widen it to other tenants",
    label = "`tenant_id = $1 OR ..` would match other tenants' rows",
    note = "put the alternatives inside one filter, which keeps the tenant condition: `.filter(a.or(b))`"
)]
pub trait NoWidening: crate::__private::Sealed {}
