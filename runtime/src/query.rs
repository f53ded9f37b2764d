//! What a tenant connection may run ([`TenantQuery`]) and the methods that run it ([`RunTenantQuery`]).

use std::future::Future;

use diesel::internal::table_macro::{BoxedSelectStatement, FromClause, SelectStatement};
use diesel::pg::Pg;
use diesel::query_builder::{DeleteStatement, UpdateStatement};
use diesel::QueryResult;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::AsyncPgConnection;

use crate::conn::TenantConn;
use crate::ctx::{Access, CanWrite};
use crate::insert::ScopedInsert;
use crate::scoped::{Scoped, ScopedWhere};
use crate::table::GlobalTable;

mod sealed {
    /// Seal of [`super::TenantQuery`]: only tenantry decides what is tenant-safe.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be marked tenant-safe by hand",
        label = "the tenant-query marker is sealed",
        note = "build the query from `<Model>::scoped(&ctx)` (tenant tables) or a `#[global_table]`; cross-tenant work goes through `no_tenant_scope!`"
    )]
    pub trait Sealed<A> {}
}

/// A query a tenant connection may run in access mode `A`: a scoped query, a scoped insert,
/// update or delete (read-write only), or a read of a global table.
///
/// Sealed: it cannot be implemented outside tenantry.
#[diagnostic::on_unimplemented(
    message = "this query is not tenant-scoped, so a tenant connection will not run it",
    label = "not built from `<Model>::scoped(&ctx)`",
    note = "scope it: `Invoice::scoped(&ctx).filter(..)`; insert with `Invoice::insert(&ctx, new)`; update or delete with `diesel::update(Invoice::scoped(&ctx).filter(..))`",
    note = "raw SQL and cross-tenant work need an audited bypass: `no_tenant_scope!(&actor, \"reason\")`"
)]
pub trait TenantQuery<A: Access>: sealed::Sealed<A> {
    /// The Diesel query that runs.
    type Inner;
    /// Unwraps the Diesel query.
    fn into_inner(self) -> Self::Inner;
}

impl<Q, A: Access> sealed::Sealed<A> for Scoped<Q> {}
impl<Q, A: Access> TenantQuery<A> for Scoped<Q> {
    type Inner = Q;
    fn into_inner(self) -> Q {
        self.into_query()
    }
}

impl<S, A: CanWrite> sealed::Sealed<A> for ScopedInsert<S> {}
impl<S, A: CanWrite> TenantQuery<A> for ScopedInsert<S> {
    type Inner = S;
    fn into_inner(self) -> S {
        self.into_statement()
    }
}

impl<T, W, V, R, A> sealed::Sealed<A> for UpdateStatement<T, ScopedWhere<W>, V, R>
where
    T: diesel::QuerySource,
    A: CanWrite,
{
}
impl<T, W, V, R, A> TenantQuery<A> for UpdateStatement<T, ScopedWhere<W>, V, R>
where
    T: diesel::QuerySource,
    A: CanWrite,
{
    type Inner = Self;
    fn into_inner(self) -> Self {
        self
    }
}

impl<T, W, R, A> sealed::Sealed<A> for DeleteStatement<T, ScopedWhere<W>, R>
where
    T: diesel::QuerySource,
    A: CanWrite,
{
}
impl<T, W, R, A> TenantQuery<A> for DeleteStatement<T, ScopedWhere<W>, R>
where
    T: diesel::QuerySource,
    A: CanWrite,
{
    type Inner = Self;
    fn into_inner(self) -> Self {
        self
    }
}

impl<T: GlobalTable, A: Access> sealed::Sealed<A> for T {}
impl<T: GlobalTable, A: Access> TenantQuery<A> for T {
    type Inner = T;
    fn into_inner(self) -> T {
        self
    }
}

impl<T, S, D, W, O, LO, G, H, LC, A> sealed::Sealed<A>
    for SelectStatement<FromClause<T>, S, D, W, O, LO, G, H, LC>
where
    T: GlobalTable,
    A: Access,
{
}
impl<T, S, D, W, O, LO, G, H, LC, A> TenantQuery<A>
    for SelectStatement<FromClause<T>, S, D, W, O, LO, G, H, LC>
where
    T: GlobalTable,
    A: Access,
{
    type Inner = Self;
    fn into_inner(self) -> Self {
        self
    }
}

impl<'a, ST, T, GB, A> sealed::Sealed<A> for BoxedSelectStatement<'a, ST, FromClause<T>, Pg, GB>
where
    T: GlobalTable,
    A: Access,
{
}
impl<'a, ST, T, GB, A> TenantQuery<A> for BoxedSelectStatement<'a, ST, FromClause<T>, Pg, GB>
where
    T: GlobalTable,
    A: Access,
{
    type Inner = Self;
    fn into_inner(self) -> Self {
        self
    }
}

/// Runs tenant queries on a [`TenantConn`]: `Invoice::scoped(&ctx).load(conn).await`.
///
/// Implemented for every type, so that an unscoped query fails with tenantry's message
/// ("this query is not tenant-scoped") rather than a missing method. Import it through
/// `tenantry::prelude::*` and do not import `diesel_async::RunQueryDsl` in the same module
/// (the two would make `.load` ambiguous).
pub trait RunTenantQuery<A: Access>: Sized {
    /// Loads all rows.
    fn load<'c, 'a: 'c, U>(
        self,
        conn: &'c mut TenantConn<'a, A>,
    ) -> impl Future<Output = QueryResult<Vec<U>>> + Send + 'c
    where
        Self: TenantQuery<A>,
        Self::Inner: LoadQuery<'c, &'a AsyncPgConnection, U> + 'c,
        U: Send + 'c,
    {
        diesel_async::RunQueryDsl::load(self.into_inner(), conn.raw_for_run())
    }

    /// Loads all rows (alias of [`RunTenantQuery::load`]).
    fn get_results<'c, 'a: 'c, U>(
        self,
        conn: &'c mut TenantConn<'a, A>,
    ) -> impl Future<Output = QueryResult<Vec<U>>> + Send + 'c
    where
        Self: TenantQuery<A>,
        Self::Inner: LoadQuery<'c, &'a AsyncPgConnection, U> + 'c,
        U: Send + 'c,
    {
        self.load(conn)
    }

    /// Loads exactly one row (`NotFound` if there is none), e.g. an insert's `RETURNING` row.
    fn get_result<'c, 'a: 'c, U>(
        self,
        conn: &'c mut TenantConn<'a, A>,
    ) -> impl Future<Output = QueryResult<U>> + Send + 'c
    where
        Self: TenantQuery<A>,
        Self::Inner: LoadQuery<'c, &'a AsyncPgConnection, U> + 'c,
        U: Send + 'c,
    {
        diesel_async::RunQueryDsl::get_result(self.into_inner(), conn.raw_for_run())
    }

    /// Loads the first row (`LIMIT 1`; `NotFound` if there is none).
    fn first<'c, 'a: 'c, U>(
        self,
        conn: &'c mut TenantConn<'a, A>,
    ) -> impl Future<Output = QueryResult<U>> + Send + 'c
    where
        Self: TenantQuery<A>,
        Self::Inner: diesel::query_dsl::methods::LimitDsl,
        diesel::dsl::Limit<Self::Inner>: LoadQuery<'c, &'a AsyncPgConnection, U> + Send + 'c,
        U: Send + 'c,
    {
        diesel_async::RunQueryDsl::first(self.into_inner(), conn.raw_for_run())
    }

    /// Runs an insert, update or delete and returns the number of rows it touched.
    fn execute<'c, 'a: 'c>(
        self,
        conn: &'c mut TenantConn<'a, A>,
    ) -> impl Future<Output = QueryResult<usize>> + Send + 'c
    where
        Self: TenantQuery<A>,
        Self::Inner: ExecuteDsl<&'a AsyncPgConnection> + 'c,
    {
        diesel_async::RunQueryDsl::execute(self.into_inner(), conn.raw_for_run())
    }
}

impl<T, A: Access> RunTenantQuery<A> for T {}
