//! The connections handed to transaction closures: [`TenantConn`] and [`BypassConn`].

use diesel::pg::Pg;
use diesel::query_builder::SqlQuery;
use diesel::QueryableByName;
use std::future::Future;

use diesel::QueryResult;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::audit::AuditEntry;
use crate::bypass::AuditedBypass;
use crate::ctx::{Access, ReadWrite, TenantCtx};
use crate::error::DbError;

/// A connection inside one tenant's transaction.
///
/// It is not a Diesel connection and never dereferences to one: it runs only what
/// [`crate::TenantQuery`] admits (scoped queries, scoped writes, global reads), through
/// [`crate::RunTenantQuery`]. Raw SQL needs an [`AuditedBypass`] and still runs under row-level
/// security, inside this tenant's transaction.
pub struct TenantConn<'a, A: Access = ReadWrite> {
    conn: &'a AsyncPgConnection,
    ctx: TenantCtx<A>,
}

impl<'a, A: Access> TenantConn<'a, A> {
    pub(crate) fn new(conn: &'a AsyncPgConnection, ctx: TenantCtx<A>) -> Self {
        Self { conn, ctx }
    }

    /// The context this transaction acts in (for building more scoped queries).
    pub fn ctx(&self) -> &TenantCtx<A> {
        &self.ctx
    }

    /// The active tenant's id.
    pub fn tenant_id(&self) -> uuid::Uuid {
        self.ctx.tenant_id()
    }

    pub(crate) fn raw_for_run(&mut self) -> &mut &'a AsyncPgConnection {
        &mut self.conn
    }

    async fn audit_raw(&self, bypass: &AuditedBypass) -> Result<(), DbError> {
        let location = bypass.location();
        tracing::warn!(
            actor = bypass.actor.email(),
            action = %bypass.action,
            reason = %bypass.reason,
            tenant_id = %self.ctx.tenant_id(),
            location = %location,
            "raw SQL inside a tenant transaction (audited bypass)"
        );
        AuditEntry {
            actor: &bypass.actor,
            action: &bypass.action,
            reason: &bypass.reason,
            tenant_id: Some(self.ctx.tenant_id()),
            request_id: bypass.request_id.as_deref().or(self.ctx.request_id()),
            location: Some(&location),
        }
        .write(self.conn)
        .await?;
        Ok(())
    }

    /// Runs raw SQL returning rows, under row-level security, after writing one audit row.
    pub async fn raw_load<U>(
        &mut self,
        bypass: AuditedBypass,
        query: SqlQuery,
    ) -> Result<Vec<U>, DbError>
    where
        U: QueryableByName<Pg> + Send + 'static,
    {
        self.audit_raw(&bypass).await?;
        let mut conn = self.conn;
        Ok(query.load::<U>(&mut conn).await?)
    }

    /// Runs a raw SQL statement, under row-level security, after writing one audit row.
    pub async fn raw_execute(
        &mut self,
        bypass: AuditedBypass,
        query: SqlQuery,
    ) -> Result<usize, DbError> {
        self.audit_raw(&bypass).await?;
        let mut conn = self.conn;
        Ok(query.execute(&mut conn).await?)
    }
}

/// A connection of audited cross-tenant work, on the bypass role (which ignores row-level
/// security). Only [`crate::Db::bypass`] hands one out, after writing the audit row.
pub struct BypassConn<'a> {
    conn: &'a AsyncPgConnection,
}

impl<'a> BypassConn<'a> {
    pub(crate) fn new(conn: &'a AsyncPgConnection) -> Self {
        Self { conn }
    }

    /// The Diesel connection, for `diesel_async::RunQueryDsl` in a module that does not import
    /// tenantry's prelude. Prefer the methods below.
    pub fn diesel(&mut self) -> &mut &'a AsyncPgConnection {
        &mut self.conn
    }

    /// Loads all rows of any Diesel query, across tenants.
    pub fn load<'c, U, Q>(
        &'c mut self,
        query: Q,
    ) -> impl Future<Output = QueryResult<Vec<U>>> + Send + use<'a, 'c, U, Q>
    where
        Q: LoadQuery<'c, &'a AsyncPgConnection, U> + 'c,
        U: Send + 'c,
    {
        RunQueryDsl::load(query, &mut self.conn)
    }

    /// Loads exactly one row of any Diesel query, across tenants.
    pub fn get_result<'c, U, Q>(
        &'c mut self,
        query: Q,
    ) -> impl Future<Output = QueryResult<U>> + Send + use<'a, 'c, U, Q>
    where
        Q: LoadQuery<'c, &'a AsyncPgConnection, U> + 'c,
        U: Send + 'c,
    {
        RunQueryDsl::get_result(query, &mut self.conn)
    }

    /// Runs any Diesel statement, across tenants; returns the number of rows touched.
    pub fn execute<'c, Q>(
        &'c mut self,
        query: Q,
    ) -> impl Future<Output = QueryResult<usize>> + Send + use<'a, 'c, Q>
    where
        Q: ExecuteDsl<&'a AsyncPgConnection> + 'c,
    {
        RunQueryDsl::execute(query, &mut self.conn)
    }
}
