//! What a tenant connection may run ([`TenantQuery`]) and the methods that run it ([`RunTenantQuery`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use diesel::internal::table_macro::{BoxedSelectStatement, FromClause, SelectStatement};
use diesel::pg::Pg;
use diesel::query_builder::{DeleteStatement, QueryId, UpdateStatement};
use diesel::QueryResult;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::AsyncPgConnection;

use crate::ctx::conn::TenantConn;
use crate::ctx::{Access, CanWrite};
use crate::pool::{Run, StatementKey};
use crate::scope::changes::CheckedChanges;
use crate::scope::fragment::RuntimeSqlFragment;
use crate::scope::global_query::ReadsOnlyGlobalTables;
use crate::scope::insert::ScopedInsert;
use crate::scope::scoped::{Scoped, ScopedWhere};
use crate::scope::table::GlobalTable;

mod sealed {
    /// Seal of [`super::TenantQuery`]: only tenantry decides what is tenant-safe.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be marked tenant-safe by hand",
        label = "the tenant-query marker is sealed",
        note = "build the query from `<Model>::scoped(conn)` (tenant tables) or a `#[global_table]`; cross-tenant work goes through `no_tenant_scope!`"
    )]
    pub trait Sealed<'tx, A> {}
}

/// A query a tenant connection of transaction `'tx` may run: a scoped query built from that
/// transaction's connection, a scoped insert, update or delete (whose writes were checked when
/// they were built: read-write transaction, no tenant column in the changes), or a read of a
/// global table.
///
/// Sealed: it cannot be implemented outside tenantry.
#[diagnostic::on_unimplemented(
    message = "a tenant connection will not run this query: it is not built from `<Model>::scoped(conn)`, or it sets columns tenantry cannot see (Diesel's `.eq(..)` in `.set(..)`), or a global query reads a tenant table",
    label = "not a query tenantry checked",
    note = "scope it: `Invoice::scoped(conn).filter(..)`; insert with `Invoice::insert(conn, new)`; update or delete with `diesel::update(Invoice::scoped(conn).filter(..))`",
    note = "a scoped update sets columns with `column.to(value)` or tenantry's `#[derive(AsChangeset)]`, which tenantry checks (never the tenant column); Diesel's `.eq(..)` assignments and its own derive hide the column they set",
    note = "raw SQL and cross-tenant work need an audited bypass: `no_tenant_scope!(&owner, \"reason\")`",
    note = "a query on a `#[global_table]` may read only global tables: a subquery over a tenant table in its filter or selection is refused; start from the scoped query and join the global table (`Invoice::scoped(conn).inner_join(currencies::table)`)"
)]
pub trait TenantQuery<'tx, A: Access>: sealed::Sealed<'tx, A> {
    /// The Diesel query that runs.
    type Inner;
    /// Unwraps the Diesel query.
    fn into_inner(self) -> Self::Inner;

    /// Why the tenant connection will not run this query: a filter, selection or order that
    /// holds SQL text built at run time (see [`RuntimeSqlFragment`]). Update values and the
    /// `WHERE` clause of a scoped update or delete fail when the statement is built instead.
    #[doc(hidden)]
    fn refused(&self) -> Option<RuntimeSqlFragment> {
        None
    }
}

impl<'tx, Q, A: Access> sealed::Sealed<'tx, A> for Scoped<'tx, Q, A> {}
impl<'tx, Q, A: Access> TenantQuery<'tx, A> for Scoped<'tx, Q, A> {
    type Inner = Q;
    fn into_inner(self) -> Q {
        self.into_query()
    }
    fn refused(&self) -> Option<RuntimeSqlFragment> {
        Scoped::refused(self)
    }
}

impl<'tx, S, A: Access> sealed::Sealed<'tx, A> for ScopedInsert<'tx, S> {}
impl<'tx, S, A: Access> TenantQuery<'tx, A> for ScopedInsert<'tx, S> {
    type Inner = S;
    fn into_inner(self) -> S {
        self.into_statement()
    }
}

impl<'tx, T, W, V, R, A: Access> sealed::Sealed<'tx, A>
    for UpdateStatement<T, ScopedWhere<'tx, W>, V, R>
where
    T: diesel::QuerySource,
{
}
impl<'tx, T, W, V, R, A> TenantQuery<'tx, A> for UpdateStatement<T, ScopedWhere<'tx, W>, V, R>
where
    T: diesel::QuerySource,
    A: CanWrite,
    V: CheckedChanges,
{
    type Inner = Self;
    fn into_inner(self) -> Self {
        self
    }
}

impl<'tx, T, W, R, A: Access> sealed::Sealed<'tx, A> for DeleteStatement<T, ScopedWhere<'tx, W>, R> where
    T: diesel::QuerySource
{
}
impl<'tx, T, W, R, A> TenantQuery<'tx, A> for DeleteStatement<T, ScopedWhere<'tx, W>, R>
where
    T: diesel::QuerySource,
    A: CanWrite,
{
    type Inner = Self;
    fn into_inner(self) -> Self {
        self
    }
}

impl<'tx, T: GlobalTable, A: Access> sealed::Sealed<'tx, A> for T {}
impl<'tx, T: GlobalTable, A: Access> TenantQuery<'tx, A> for T {
    type Inner = T;
    fn into_inner(self) -> T {
        self
    }
}

impl<'tx, T, S, D, W, O, LO, G, H, LC, A: Access> sealed::Sealed<'tx, A>
    for SelectStatement<FromClause<T>, S, D, W, O, LO, G, H, LC>
where
    T: GlobalTable,
{
}
impl<'tx, T, S, D, W, O, LO, G, H, LC, A: Access> TenantQuery<'tx, A>
    for SelectStatement<FromClause<T>, S, D, W, O, LO, G, H, LC>
where
    T: GlobalTable,
    Self: ReadsOnlyGlobalTables<T>,
{
    type Inner = Self;
    fn into_inner(self) -> Self {
        self
    }
}

impl<'tx, 'a, ST, T, GB, A: Access> sealed::Sealed<'tx, A>
    for BoxedSelectStatement<'a, ST, FromClause<T>, Pg, GB>
where
    T: GlobalTable,
{
}
impl<'tx, 'a, ST, T, GB, A: Access> TenantQuery<'tx, A>
    for BoxedSelectStatement<'a, ST, FromClause<T>, Pg, GB>
where
    T: GlobalTable,
{
    type Inner = Self;
    fn into_inner(self) -> Self {
        self
    }
}

/// The future of one tenant query, returned by the methods of [`RunTenantQuery`]: boxed, so that a
/// query a tenant connection will not run is one compile error at the method, not three.
///
/// Only those methods make one, so a `RunFuture` always runs exactly one statement: what
/// [`Db::query`](crate::db::Db::query) relies on to send `BEGIN`, the statement and `COMMIT` in one
/// round trip.
#[must_use = "a query does nothing until its future is awaited"]
pub struct RunFuture<'c, T> {
    inner: Pin<Box<dyn Future<Output = QueryResult<T>> + Send + 'c>>,
    statement: Option<StatementKey>,
}

impl<'c, T: 'c> RunFuture<'c, T> {
    fn new(
        future: impl Future<Output = QueryResult<T>> + Send + 'c,
        statement: Option<StatementKey>,
    ) -> Self {
        RunFuture {
            inner: Box::pin(future),
            statement,
        }
    }

    /// A future that sends nothing and fails with `refused`.
    fn refused(refused: RuntimeSqlFragment) -> Self
    where
        T: Send,
    {
        RunFuture::new(std::future::ready(Err(refused.into())), None)
    }

    /// The statement it runs, if its type alone decides it.
    pub(crate) fn statement(&self) -> Option<StatementKey> {
        self.statement
    }

    /// `Ok(None)` instead of `Err(NotFound)` when no row matched (another tenant's row included),
    /// like Diesel's `OptionalExtension`, for a future not yet awaited:
    /// `db.query(&ctx, |conn| Invoice::scoped(conn).filter(invoices::id.eq(id)).first(conn).optional())`.
    pub fn optional(self) -> RunFuture<'c, Option<T>> {
        let inner = self.inner;
        let future = async move {
            match inner.await {
                Ok(row) => Ok(Some(row)),
                Err(diesel::result::Error::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        };
        RunFuture::new(future, self.statement)
    }
}

impl<T> Future for RunFuture<'_, T> {
    type Output = QueryResult<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<QueryResult<T>> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T> std::fmt::Debug for RunFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunFuture")
    }
}

/// Runs tenant queries on a [`TenantConn`]: `Invoice::scoped(conn).load(conn).await`.
///
/// Implemented for tenantry's scoped queries and inserts and for Diesel's query types, so that
/// an unscoped Diesel query fails with tenantry's message ("this query is not tenant-scoped")
/// rather than a missing method, while other types (`Vec`, your own) keep their own `first`,
/// `load` and `execute`. Import it through `tenantry::prelude::*` and do not import
/// `diesel_async::RunQueryDsl` in the same module (the two would make `.load` ambiguous).
pub trait RunTenantQuery<A: Access>: Sized {
    /// Loads all rows.
    fn load<'c, 'tx, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, Vec<U>>
    where
        Self: TenantQuery<'tx, A>,
        Self::Inner: LoadQuery<'c, &'tx AsyncPgConnection, U> + 'c,
        U: Send + 'c,
        Self::Inner: QueryId,
    {
        if let Some(refused) = self.refused() {
            return RunFuture::refused(refused);
        }
        let statement = StatementKey::of::<Self::Inner>(Run::Load);
        RunFuture::new(
            diesel_async::RunQueryDsl::load(self.into_inner(), conn.raw_for_run()),
            statement,
        )
    }

    /// Loads all rows (alias of [`RunTenantQuery::load`]).
    fn get_results<'c, 'tx, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, Vec<U>>
    where
        Self: TenantQuery<'tx, A>,
        Self::Inner: LoadQuery<'c, &'tx AsyncPgConnection, U> + 'c,
        U: Send + 'c,
        Self::Inner: QueryId,
    {
        if let Some(refused) = self.refused() {
            return RunFuture::refused(refused);
        }
        let statement = StatementKey::of::<Self::Inner>(Run::Load);
        RunFuture::new(
            diesel_async::RunQueryDsl::load(self.into_inner(), conn.raw_for_run()),
            statement,
        )
    }

    /// Loads exactly one row (`NotFound` if there is none), e.g. an insert's `RETURNING` row.
    fn get_result<'c, 'tx, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, U>
    where
        Self: TenantQuery<'tx, A>,
        Self::Inner: LoadQuery<'c, &'tx AsyncPgConnection, U> + 'c,
        U: Send + 'c,
        Self::Inner: QueryId,
    {
        if let Some(refused) = self.refused() {
            return RunFuture::refused(refused);
        }
        let statement = StatementKey::of::<Self::Inner>(Run::Load);
        RunFuture::new(
            diesel_async::RunQueryDsl::get_result(self.into_inner(), conn.raw_for_run()),
            statement,
        )
    }

    /// Loads the first row (`LIMIT 1`; `NotFound` if there is none).
    fn first<'c, 'tx, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, U>
    where
        Self: TenantQuery<'tx, A>,
        Self::Inner: diesel::query_dsl::methods::LimitDsl,
        diesel::dsl::Limit<Self::Inner>: LoadQuery<'c, &'tx AsyncPgConnection, U> + Send + 'c,
        U: Send + 'c,
        Self::Inner: QueryId,
    {
        if let Some(refused) = self.refused() {
            return RunFuture::refused(refused);
        }
        let statement = StatementKey::of::<Self::Inner>(Run::First);
        RunFuture::new(
            diesel_async::RunQueryDsl::first(self.into_inner(), conn.raw_for_run()),
            statement,
        )
    }

    /// Runs an insert, update or delete and returns the number of rows it touched.
    fn execute<'c, 'tx>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, usize>
    where
        Self: TenantQuery<'tx, A>,
        Self::Inner: ExecuteDsl<&'tx AsyncPgConnection> + 'c,
        Self::Inner: QueryId,
    {
        if let Some(refused) = self.refused() {
            return RunFuture::refused(refused);
        }
        let statement = StatementKey::of::<Self::Inner>(Run::Execute);
        RunFuture::new(
            diesel_async::RunQueryDsl::execute(self.into_inner(), conn.raw_for_run()),
            statement,
        )
    }
}

impl<T: QueryId, A: Access> RunTenantQuery<A> for T {}
impl<Q, A: Access, B: Access> RunTenantQuery<A> for Scoped<'_, Q, B> {}
impl<S, A: Access> RunTenantQuery<A> for ScopedInsert<'_, S> {}

/// The run methods of a scoped query, inherent so that they resolve even when
/// `diesel_async::RunQueryDsl` is imported beside the prelude (its blanket `load` would
/// otherwise make `.load` ambiguous). Each is [`RunTenantQuery`]'s.
impl<'tx, Q, A: Access> Scoped<'tx, Q, A> {
    /// Loads all rows ([`RunTenantQuery::load`]).
    pub fn load<'c, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, Vec<U>>
    where
        Q: LoadQuery<'c, &'tx AsyncPgConnection, U> + QueryId + 'c,
        U: Send + 'c,
    {
        RunTenantQuery::load(self, conn)
    }

    /// Loads all rows ([`RunTenantQuery::get_results`]).
    pub fn get_results<'c, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, Vec<U>>
    where
        Q: LoadQuery<'c, &'tx AsyncPgConnection, U> + QueryId + 'c,
        U: Send + 'c,
    {
        RunTenantQuery::get_results(self, conn)
    }

    /// Loads exactly one row ([`RunTenantQuery::get_result`]).
    pub fn get_result<'c, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, U>
    where
        Q: LoadQuery<'c, &'tx AsyncPgConnection, U> + QueryId + 'c,
        U: Send + 'c,
    {
        RunTenantQuery::get_result(self, conn)
    }

    /// Loads the first row ([`RunTenantQuery::first`]).
    pub fn first<'c, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, U>
    where
        Q: diesel::query_dsl::methods::LimitDsl + QueryId,
        diesel::dsl::Limit<Q>: LoadQuery<'c, &'tx AsyncPgConnection, U> + Send + 'c,
        U: Send + 'c,
    {
        RunTenantQuery::first(self, conn)
    }

    /// Runs the statement ([`RunTenantQuery::execute`]).
    pub fn execute<'c>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, usize>
    where
        Q: ExecuteDsl<&'tx AsyncPgConnection> + QueryId + 'c,
    {
        RunTenantQuery::execute(self, conn)
    }
}

/// The run methods of a scoped insert, inherent for the same reason as [`Scoped`]'s.
impl<'tx, S> ScopedInsert<'tx, S> {
    /// Runs the insert and returns the number of rows ([`RunTenantQuery::execute`]).
    pub fn execute<'c, A: Access>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, usize>
    where
        S: ExecuteDsl<&'tx AsyncPgConnection> + QueryId + 'c,
    {
        RunTenantQuery::execute(self, conn)
    }

    /// Runs the insert and loads the `RETURNING` row ([`RunTenantQuery::get_result`]).
    pub fn get_result<'c, A: Access, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, U>
    where
        S: LoadQuery<'c, &'tx AsyncPgConnection, U> + QueryId + 'c,
        U: Send + 'c,
    {
        RunTenantQuery::get_result(self, conn)
    }

    /// Runs the insert and loads the `RETURNING` rows ([`RunTenantQuery::get_results`]).
    pub fn get_results<'c, A: Access, U>(
        self,
        conn: &'c mut TenantConn<'tx, A>,
    ) -> RunFuture<'c, Vec<U>>
    where
        S: LoadQuery<'c, &'tx AsyncPgConnection, U> + QueryId + 'c,
        U: Send + 'c,
    {
        RunTenantQuery::get_results(self, conn)
    }

    /// Alias of [`ScopedInsert::get_results`].
    pub fn load<'c, A: Access, U>(self, conn: &'c mut TenantConn<'tx, A>) -> RunFuture<'c, Vec<U>>
    where
        S: LoadQuery<'c, &'tx AsyncPgConnection, U> + QueryId + 'c,
        U: Send + 'c,
    {
        RunTenantQuery::load(self, conn)
    }
}
