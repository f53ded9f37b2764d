//! [`Db::query`]: a tenant transaction of one statement in one round trip.
//!
//! `BEGIN; SET LOCAL app.tenant_id = ..` (one simple query), the statement (`Bind`, `Execute`,
//! `Sync` of its cached prepared statement) and `COMMIT` go out before any reply is read. If
//! the statement fails, PostgreSQL answers the `COMMIT` of the failed transaction with
//! `ROLLBACK`, so nothing it did is kept.
//!
//! The order on the wire is what makes this correct: `COMMIT` must follow the statement's
//! `Execute`. diesel-async sends a statement whose prepared statement is not cached yet as
//! `Parse` first, waits for the answer, and only then `Bind`/`Execute`; a `COMMIT` queued
//! meanwhile would overtake the statement, which would then run after the transaction, outside
//! the tenant. So `COMMIT` is queued only once the connection's socket has written the
//! statement's `Execute` with no `Parse` before it (`pool/watch.rs` counts both). When a `Parse`
//! goes first (the statement's first run on this connection, a statement Diesel does not cache,
//! a custom type looked up), the transaction falls back to [`Db::tx`]'s protocol: the reply, then
//! `COMMIT`.
//!
//! Waiting to see the `Execute` written costs a wake-up of this task. So once a statement (its
//! query type, when Diesel's query id is static, and the run method) has been seen sent on a
//! connection without a `Parse`, the connection remembers it: diesel-async keeps it prepared for
//! the connection's life (its statement cache is unbounded), and a later run queues the prelude,
//! the statement and `COMMIT` in one go, the statement's first poll having queued its
//! `Bind`/`Execute` (the polls run unconstrained by tokio's cooperative budget, and the
//! connection is this transaction's alone, so no lock makes them wait).
//!
//! Either way, afterwards the socket's counts must show no `Execute` after the `COMMIT`; if one
//! did, the result is refused and the connection closed.
//!
//! The closure returns a [`RunFuture`], which only tenantry's run methods make and which runs
//! exactly one statement, so there is nothing else for the `COMMIT` to overtake.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use super::{begin_tenant_sql, checkout, Db, TxGuard};
use crate::conn::TenantConn;
use crate::ctx::{Access, TenantCtx};
use crate::error::DbError;
use crate::pooler::Pooler;
use crate::query::RunFuture;

/// How the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The statement's `Execute` is on the wire or queued before: `COMMIT` goes out now,
    /// before any reply.
    Pipelined,
    /// A `Parse` went first, or the statement ended without an `Execute`: `COMMIT` (or
    /// `ROLLBACK`) after the reply, as in [`Db::tx`].
    AfterReply,
}

impl Db {
    /// Runs one statement in a transaction of `ctx`'s tenant, in one round trip to PostgreSQL.
    ///
    /// `query` builds the statement from the transaction's connection and returns the future of
    /// one of tenantry's run methods (`load`, `first`, `get_result`, `execute`, optionally
    /// followed by `.optional()`):
    ///
    /// ```no_run
    /// # use tenantry_runtime::prelude::*;
    /// # use tenantry_runtime::{Access, Scoped, ScopedFrom};
    /// # diesel::table! { invoices (id) { id -> Integer, tenant_id -> Uuid, } }
    /// # #[derive(Queryable)] struct Invoice { id: i32, tenant_id: uuid::Uuid }
    /// # impl Invoice { // what `#[tenant_table]` generates
    /// #     fn scoped<'tx, A: Access>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<invoices::table, invoices::tenant_id>, A> {
    /// #         tenantry_runtime::__private::scoped::<invoices::table, invoices::tenant_id, A>(conn)
    /// #     }
    /// # }
    /// # async fn f(db: &Db, ctx: &TenantCtx<'_>, id: i32) -> Result<(), tenantry_runtime::DbError> {
    /// let invoice: Option<Invoice> = db
    ///     .query(ctx, |conn| {
    ///         Invoice::scoped(conn).filter(invoices::id.eq(id)).first(conn).optional()
    ///     })
    ///     .await?;
    /// let deleted: usize = db
    ///     .query(ctx, |conn| {
    ///         diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(id))).execute(conn)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Everything [`Db::tx`] checks at compile time holds: the statement is built from this
    /// transaction's connection, a read-only context cannot write, and writes take checked
    /// changes. What differs is the protocol: `BEGIN; SET LOCAL app.tenant_id = ..`, the
    /// statement and `COMMIT` are sent together, so a handler that runs one statement pays one
    /// round trip instead of two.
    ///
    /// That holds for the statements Diesel keeps prepared on a connection: selects (boxed or
    /// not), single-row inserts and deletes, from their second run on a pooled connection.
    /// Diesel prepares every update and multi-row insert anew (their SQL varies with the
    /// changes), and any statement's first run on a connection is prepared too: those pay the
    /// round trips [`Db::tx`] pays (`COMMIT` after the statement's reply), because a `COMMIT`
    /// sent with them would overtake them.
    ///
    /// Behind a transaction pooler ([`Pooler::Transaction`]) there is no statement cache, so
    /// every statement is parsed anew and `query` runs with [`Db::tx`]'s protocol.
    ///
    /// If the statement fails, the transaction rolls back. The commit is decided by the
    /// server's outcome of the statement: a result that fails to deserialize in the client is
    /// an error, but a write the server made is committed (use [`Db::tx`] when the client must
    /// have the last word). A future dropped midway closes the connection, as in [`Db::tx`].
    ///
    /// A query built in another transaction does not compile:
    ///
    /// ```compile_fail
    /// # use tenantry_runtime::prelude::*;
    /// # use tenantry_runtime::{Access, Scoped, ScopedFrom};
    /// # diesel::table! { invoices (id) { id -> Integer, tenant_id -> Uuid, } }
    /// # #[derive(Queryable)] struct Invoice { id: i32, tenant_id: uuid::Uuid }
    /// # impl Invoice { // what `#[tenant_table]` generates
    /// #     fn scoped<'tx, A: Access>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<invoices::table, invoices::tenant_id>, A> {
    /// #         tenantry_runtime::__private::scoped::<invoices::table, invoices::tenant_id, A>(conn)
    /// #     }
    /// # }
    /// # async fn f(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, tenantry_runtime::DbError> {
    /// db.tx(ctx, async |outer| {
    ///     let q = Invoice::scoped(outer);
    ///     db.query(ctx, |conn| q.load(conn)).await // built in the outer transaction
    /// })
    /// .await
    /// # }
    /// ```
    ///
    /// nor does a write in a read-only context:
    ///
    /// ```compile_fail
    /// # use tenantry_runtime::prelude::*;
    /// # use tenantry_runtime::{Access, Scoped, ScopedFrom};
    /// # diesel::table! { invoices (id) { id -> Integer, tenant_id -> Uuid, } }
    /// # #[derive(Queryable)] struct Invoice { id: i32, tenant_id: uuid::Uuid }
    /// # impl Invoice { // what `#[tenant_table]` generates
    /// #     fn scoped<'tx, A: Access>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<invoices::table, invoices::tenant_id>, A> {
    /// #         tenantry_runtime::__private::scoped::<invoices::table, invoices::tenant_id, A>(conn)
    /// #     }
    /// # }
    /// # async fn f(db: &Db, ctx: &TenantCtx<'_, ReadOnly>) -> Result<usize, tenantry_runtime::DbError> {
    /// db.query(ctx, |conn| {
    ///     diesel::delete(Invoice::scoped(conn).filter(invoices::id.eq(1))).execute(conn)
    /// })
    /// .await
    /// # }
    /// ```
    ///
    /// nor a future that is not one of tenantry's run methods (it could run anything):
    ///
    /// ```compile_fail
    /// # use tenantry_runtime::prelude::*;
    /// # use tenantry_runtime::{Access, Scoped, ScopedFrom};
    /// # diesel::table! { invoices (id) { id -> Integer, tenant_id -> Uuid, } }
    /// # #[derive(Queryable)] struct Invoice { id: i32, tenant_id: uuid::Uuid }
    /// # impl Invoice { // what `#[tenant_table]` generates
    /// #     fn scoped<'tx, A: Access>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<invoices::table, invoices::tenant_id>, A> {
    /// #         tenantry_runtime::__private::scoped::<invoices::table, invoices::tenant_id, A>(conn)
    /// #     }
    /// # }
    /// # async fn f(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, tenantry_runtime::DbError> {
    /// db.query(ctx, |conn| Box::pin(async move { Invoice::scoped(conn).load(conn).await }))
    ///     .await
    /// # }
    /// ```
    pub async fn query<A, T, F>(&self, ctx: &TenantCtx<'_, A>, query: F) -> Result<T, DbError>
    where
        A: Access,
        F: for<'c, 'tx> FnOnce(&'c mut TenantConn<'tx, A>) -> RunFuture<'c, T>,
    {
        if self.pooler == Pooler::Transaction {
            // Without a statement cache every statement is parsed anew, so nothing could be
            // pipelined: the protocol of `Db::tx`, with its checks.
            return self
                .tx(ctx, async |conn| query(conn).await.map_err(DbError::from))
                .await;
        }
        let obj = checkout(&self.app, &self.app_outage).await?;
        let mut guard = TxGuard::new(obj, self.app_outage.clone());
        let link = guard.link().clone();
        let before = link.sent();
        let (statement, prepared);
        let (begun, committed, result) = {
            let conn: &AsyncPgConnection = guard.conn();
            let prelude_sql = begin_tenant_sql(ctx.tenant_id(), A::READ_ONLY, &self.tx_settings);
            let mut prelude_conn = conn;
            let mut prelude = pin!(prelude_conn.batch_execute(&prelude_sql));
            // Building the statement's future sends nothing: it is sent when first polled.
            let mut tenant_conn = TenantConn::new(conn, ctx.scope().clone());
            let mut work = pin!(query(&mut tenant_conn));
            statement = work.statement();
            prepared = statement.is_some_and(|s| guard.pooled().is_prepared(s));
            let (mut begun, mut result) = (None, None);
            // The first polls queue the prelude, then the statement (tokio-postgres sends on
            // the first poll; unconstrained, so that no cooperative budget postpones it).
            tokio::task::unconstrained(poll_fn(|cx| {
                if let Poll::Ready(r) = prelude.as_mut().poll(cx) {
                    begun = Some(r);
                }
                if prepared {
                    if let Poll::Ready(r) = work.as_mut().poll(cx) {
                        result = Some(r);
                    }
                }
                Poll::Ready(())
            }))
            .await;

            let end = poll_fn(|cx| {
                if prepared {
                    // Seen sent without a `Parse` on this connection before: diesel-async holds
                    // it prepared, so its first poll above queued its `Bind`/`Execute`.
                    return Poll::Ready(End::Pipelined);
                }
                if begun.is_none() {
                    if let Poll::Ready(r) = prelude.as_mut().poll(cx) {
                        begun = Some(r);
                    }
                }
                if result.is_none() {
                    if let Poll::Ready(r) = work.as_mut().poll(cx) {
                        result = Some(r);
                    }
                }
                link.wake_on_written(cx.waker());
                let sent = link.sent();
                if sent.parses > before.parses {
                    Poll::Ready(End::AfterReply)
                } else if sent.executes > before.executes {
                    Poll::Ready(End::Pipelined)
                } else if result.is_some() {
                    Poll::Ready(End::AfterReply)
                } else {
                    Poll::Pending
                }
            })
            .await;

            let mut commit_conn = conn;
            let mut commit = pin!(async {
                match end {
                    End::Pipelined => Some(commit_conn.batch_execute("COMMIT").await),
                    End::AfterReply => None,
                }
            });
            let mut committed = None;
            poll_fn(|cx| {
                if begun.is_none() {
                    if let Poll::Ready(r) = prelude.as_mut().poll(cx) {
                        begun = Some(r);
                    }
                }
                if result.is_none() {
                    if let Poll::Ready(r) = work.as_mut().poll(cx) {
                        result = Some(r);
                    }
                }
                if committed.is_none() {
                    if let Poll::Ready(r) = commit.as_mut().poll(cx) {
                        committed = Some(r);
                    }
                }
                if begun.is_some() && result.is_some() && committed.is_some() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            let begun = begun.expect("polled to completion");
            let result = result.expect("polled to completion");
            (begun, committed.expect("polled to completion"), result)
        };
        if let Err(e) = begun {
            // The statement ran without a tenant (row-level security showed it nothing); drop
            // the connection rather than guess its state.
            guard.discard();
            let e = DbError::from(e);
            if e.is_unavailable() {
                self.app_outage.failed(&e);
            }
            return Err(e);
        }
        let result = result.map_err(DbError::from);
        match committed {
            // Not pipelined: COMMIT or ROLLBACK now, after the reply.
            None => guard.finish(result).await,
            Some(Err(e)) => {
                guard.discard();
                let e = DbError::from(e);
                if e.is_unavailable() {
                    self.app_outage.failed(&e);
                }
                Err(result.err().unwrap_or(e))
            }
            Some(Ok(())) => {
                let after = link.sent();
                if after.executes != after.executes_before_query {
                    // An `Execute` followed the `COMMIT`: part of the work ran outside the
                    // transaction. Never expected (see the module docs); refuse its result.
                    guard.discard();
                    tracing::error!("a pipelined tenant transaction sent a statement after COMMIT");
                    return Err(DbError::Query(diesel::result::Error::QueryBuilderError(
                        "tenantry: a statement went out after the transaction's COMMIT".into(),
                    )));
                }
                if let Some(statement) = statement.filter(|_| !prepared) {
                    if after.parses == before.parses {
                        guard.pooled().prepared(statement);
                    }
                }
                guard.committed();
                result
            }
        }
    }
}
