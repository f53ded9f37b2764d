//! [`Db::query`]: a tenant transaction of one statement in one round trip.
//!
//! Everything up to a `Sync` is one implicit transaction in PostgreSQL's extended protocol. So
//! the statement goes out as the middle of three: the tenant seal's entry (`tenantry_enter`, a
//! `Bind`/`Execute` of its statement prepared on the connection), the statement's own `Bind`/
//! `Execute`, the seal's assertion, and one `Sync`. No `BEGIN`, no `COMMIT`: if any of the three
//! fails, the server skips the rest and rolls the transaction back at the `Sync`; if all succeed,
//! it commits there. The socket writes the seal's parts around the statement and keeps their
//! replies (`pool/splice.rs`): tokio-postgres sees its statement and its replies only.
//!
//! This needs the statement to go out as one `Bind`/`Execute`/`Sync`, with no `Parse` first: a
//! statement diesel-async keeps prepared on the connection. A statement seen sent without a
//! `Parse` on a connection is remembered (diesel-async's cache is unbounded); until then, and for
//! statements Diesel prepares anew every time (updates, multi-row inserts), `query` runs the
//! explicit transaction of [`Db::tx`]: `BEGIN` and the entry pipelined with the statement, then
//! the assertion and `COMMIT`.
//!
//! Afterwards the socket's count must show exactly one client `Execute` inside the splice; if
//! not, the result is refused and the connection closed.
//!
//! On Citus the implicit transaction is not enough: Citus sends the seal's `SET LOCAL` to the
//! workers only inside a transaction block (in an implicit one every tenant would see nothing of
//! its distributed tables). There the splice opens with `BEGIN` and closes with `COMMIT`, each an
//! unnamed `Parse`/`Bind`/`Execute`, still before the statement's one `Sync`: one round trip. A
//! statement that fails leaves that block aborted, so it costs a `ROLLBACK` (a second round trip,
//! on failure only); a `COMMIT` that fails (Citus's commit on the workers) is the statement's
//! error and the connection is closed.
//!
//! The closure returns a [`RunFuture`], which only tenantry's run methods make and which runs
//! exactly one statement.

use std::pin::pin;

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures_util::future::join;

use super::{begin_sql, failed, Db, TxGuard};
use crate::ctx::conn::TenantConn;
use crate::ctx::{Access, TenantCtx};
use crate::error::DbError;
use crate::pool::pooler::Pooler;
use crate::pool::seal;
use crate::scope::query::RunFuture;

impl Db {
    /// Runs one statement in a transaction of `ctx`'s tenant, in one round trip to PostgreSQL.
    ///
    /// `query` builds the statement from the transaction's connection and returns the future of
    /// one of tenantry's run methods (`load`, `first`, `get_result`, `execute`, optionally
    /// followed by `.optional()`):
    ///
    /// ```no_run
    /// # use tenantry_runtime::prelude::*;
    /// # use tenantry_runtime::ctx::Access;
    /// # use tenantry_runtime::scope::{Scoped, ScopedFrom};
    /// # diesel::table! { invoices (id) { id -> Integer, tenant_id -> Uuid, } }
    /// # #[derive(Queryable)] struct Invoice { id: i32, tenant_id: uuid::Uuid }
    /// # impl Invoice { // what `#[tenant_table]` generates
    /// #     fn scoped<'tx, A: Access>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<invoices::table, invoices::tenant_id>, A> {
    /// #         tenantry_runtime::__private::scoped::<invoices::table, invoices::tenant_id, A>(conn)
    /// #     }
    /// # }
    /// # async fn f(db: &Db, ctx: &TenantCtx<'_>, id: i32) -> Result<(), tenantry_runtime::error::DbError> {
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
    /// changes. What differs is the protocol: the tenant's entry, the statement and the
    /// assertion of the tenant go out together, before one `Sync`, as one implicit transaction,
    /// so a handler that runs one statement pays one round trip instead of two.
    ///
    /// That holds for the statements Diesel keeps prepared on a connection: selects (boxed or
    /// not), single-row inserts and deletes, from their second run on a pooled connection.
    /// Diesel prepares every update and multi-row insert anew (their SQL varies with the
    /// changes), and any statement's first run on a connection is prepared too: those pay the
    /// round trips [`Db::tx`] pays.
    ///
    /// Behind a transaction pooler ([`Pooler::Transaction`]) there is no statement cache, so
    /// every statement is parsed anew and `query` runs with [`Db::tx`]'s protocol.
    ///
    /// If the statement fails, the transaction rolls back. The commit is decided by the
    /// server's outcome of the statement: a result that fails to deserialize in the client is
    /// an error, but a write the server made is committed (use [`Db::tx`] when the client must
    /// have the last word). A future dropped midway closes the connection, as in [`Db::tx`]. A
    /// tenant that moved before the end is [`DbError::TenantMoved`], and nothing is committed.
    ///
    /// A query built in another transaction does not compile:
    ///
    /// ```compile_fail
    /// # use tenantry_runtime::prelude::*;
    /// # use tenantry_runtime::ctx::Access;
    /// # use tenantry_runtime::scope::{Scoped, ScopedFrom};
    /// # diesel::table! { invoices (id) { id -> Integer, tenant_id -> Uuid, } }
    /// # #[derive(Queryable)] struct Invoice { id: i32, tenant_id: uuid::Uuid }
    /// # impl Invoice { // what `#[tenant_table]` generates
    /// #     fn scoped<'tx, A: Access>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<invoices::table, invoices::tenant_id>, A> {
    /// #         tenantry_runtime::__private::scoped::<invoices::table, invoices::tenant_id, A>(conn)
    /// #     }
    /// # }
    /// # async fn f(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, tenantry_runtime::error::DbError> {
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
    /// # use tenantry_runtime::ctx::Access;
    /// # use tenantry_runtime::scope::{Scoped, ScopedFrom};
    /// # diesel::table! { invoices (id) { id -> Integer, tenant_id -> Uuid, } }
    /// # #[derive(Queryable)] struct Invoice { id: i32, tenant_id: uuid::Uuid }
    /// # impl Invoice { // what `#[tenant_table]` generates
    /// #     fn scoped<'tx, A: Access>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<invoices::table, invoices::tenant_id>, A> {
    /// #         tenantry_runtime::__private::scoped::<invoices::table, invoices::tenant_id, A>(conn)
    /// #     }
    /// # }
    /// # async fn f(db: &Db, ctx: &TenantCtx<'_, ReadOnly>) -> Result<usize, tenantry_runtime::error::DbError> {
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
    /// # use tenantry_runtime::ctx::Access;
    /// # use tenantry_runtime::scope::{Scoped, ScopedFrom};
    /// # diesel::table! { invoices (id) { id -> Integer, tenant_id -> Uuid, } }
    /// # #[derive(Queryable)] struct Invoice { id: i32, tenant_id: uuid::Uuid }
    /// # impl Invoice { // what `#[tenant_table]` generates
    /// #     fn scoped<'tx, A: Access>(conn: &TenantConn<'tx, A>) -> Scoped<'tx, ScopedFrom<invoices::table, invoices::tenant_id>, A> {
    /// #         tenantry_runtime::__private::scoped::<invoices::table, invoices::tenant_id, A>(conn)
    /// #     }
    /// # }
    /// # async fn f(db: &Db, ctx: &TenantCtx<'_>) -> Result<Vec<Invoice>, tenantry_runtime::error::DbError> {
    /// db.query(ctx, |conn| Box::pin(async move { Invoice::scoped(conn).load(conn).await }))
    ///     .await
    /// # }
    /// ```
    #[tracing::instrument(name = "transaction", level = "info", skip_all, fields(tenant = %ctx.tenant_id(), request_id = ctx.scope().request_id.as_deref()))]
    pub async fn query<A, T, F>(&self, ctx: &TenantCtx<'_, A>, query: F) -> Result<T, DbError>
    where
        A: Access,
        F: for<'c, 'tx> FnOnce(&'c mut TenantConn<'tx, A>) -> RunFuture<'c, T>,
    {
        ctx.scope().alive()?;
        let owner_entry_pending = ctx
            .scope()
            .owner_entry
            .as_ref()
            .is_some_and(|e| e.is_pending());
        let citus = self.on_citus();
        if self.pooler == Pooler::Transaction || owner_entry_pending {
            // (An Owner's entry into a tenant writes its audit row first: see `Db::tx`.)
            // Without a statement cache every statement is parsed anew, so nothing could be
            // pipelined: the protocol of `Db::tx`, with its checks.
            // Boxed: this path's future (the whole of `Db::tx`) would otherwise make every
            // `query`'s future, and the handler's around it, several kilobytes larger, copied at
            // every move of the handler's future.
            return Box::pin(self.tx(ctx, async |conn| query(conn).await.map_err(DbError::from)))
                .await;
        }
        let (obj, permit) = self.tenant_checkout(ctx.tenant_id()).await?;
        let mut guard = TxGuard::new(obj, self.app_outage.clone()).with(permit);
        let link = guard.link().clone();
        let before = link.sent();
        let tenant = ctx.tenant_id();
        let entry = self.keys.keys.entry(tenant, A::READ_ONLY);
        let statements = guard.pooled().seal_statements();
        let (statement, prepared, ticket, begun, result) = {
            let conn: &AsyncPgConnection = guard.conn();
            let mut tenant_conn = TenantConn::new(conn, ctx.scope().clone(), guard.taint());
            // Building the statement's future sends nothing: it is sent when first polled.
            let work = pin!(query(&mut tenant_conn));
            let statement = work.statement();
            let prepared = statement.is_some_and(|s| guard.pooled().is_prepared(s));
            if prepared {
                // On Citus the seal reaches the workers inside a transaction block only:
                // `BEGIN` and `COMMIT` go out with the rest, before the same one `Sync`.
                let around = match citus {
                    false => entry.around(&statements),
                    true => entry.around_block(&statements),
                };
                let ticket = link.splice(around);
                let result = work.await;
                (statement, prepared, ticket, Ok(()), result)
            } else {
                let ticket = link.splice(entry.request(&statements));
                let mut begin_conn = conn;
                let begin = begin_sql(A::READ_ONLY, &self.tx_settings);
                // Boxed: the first run of a statement on a connection only (see above).
                let (begun, result) = Box::pin(join(begin_conn.batch_execute(&begin), work)).await;
                (statement, prepared, ticket, begun, result)
            }
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
        let entered = if prepared {
            Some(ticket)
        } else {
            guard.sealed = Some((tenant, ticket));
            None
        };
        let Some(ticket) = entered else {
            if let Some(statement) = statement.filter(|_| !prepared) {
                if link.sent().parses == before.parses {
                    // Sent without a `Parse`: diesel-async keeps it prepared, so next time it
                    // takes one round trip.
                    guard.pooled().prepared(statement);
                }
            }
            // The explicit transaction: the assertion and `COMMIT` now.
            return Box::pin(guard.finish(result.map_err(DbError::from), &self.keys)).await;
        };
        if link.unsplice(&ticket) {
            // The statement never went out (it failed in the client): no transaction ran.
            guard.committed();
            return result.map_err(DbError::from);
        }
        let outcome = ticket.wait().await;
        if outcome.lost {
            guard.discard();
            return Err(result.err().map(DbError::from).unwrap_or_else(|| {
                DbError::Seal("the connection ended before the transaction was answered".into())
            }));
        }
        if let Some(f) = seal::entry_failure(&outcome) {
            guard.discard();
            return Err(failed(f, &self.keys));
        }
        if let Some(e) = &outcome.second {
            guard.discard();
            return Err(failed(seal::assertion_failure(e), &self.keys));
        }
        if let Some(e) = outcome.commit {
            // The transaction block's `COMMIT` failed (Citus's commit on the workers): nothing
            // was committed.
            guard.discard();
            return Err(DbError::Query(seal::server_error(e)));
        }
        if outcome.client_executes != 1 {
            // Never expected: one run method sends one statement. Refuse what ran.
            guard.discard();
            tracing::error!(
                executes = outcome.client_executes,
                "a one-statement tenant transaction sent another number of statements"
            );
            return Err(DbError::Seal(
                "a one-statement tenant transaction did not send exactly one statement".into(),
            ));
        }
        // The implicit transaction ended at the `Sync`: committed, or rolled back with the
        // statement's error. Either way the connection is idle and clean. A transaction block
        // (Citus) that failed is still open, aborted: it is rolled back now.
        if citus && result.is_err() {
            let mut conn: &AsyncPgConnection = guard.conn();
            if conn.batch_execute("ROLLBACK").await.is_err() {
                guard.discard();
                return result.map_err(DbError::from);
            }
        }
        guard.committed();
        result.map_err(DbError::from)
    }
}
