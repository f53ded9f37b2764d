//! The connections handed to transaction closures: [`TenantConn`] and [`BypassConn`].

use std::future::Future;
use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::SqlQuery;
use diesel::QueryResult;
use diesel::QueryableByName;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::bypass::AuditedBypass;
use crate::ctx::{Access, Actor, ReadWrite, Scope};
use crate::error::DbError;

/// Ties a value to one transaction: invariant in `'tx`, so a query built from one transaction's
/// connection cannot run on another's (each transaction's closure gets a fresh `'tx`).
pub(crate) type Brand<'tx> = PhantomData<fn(&'tx ()) -> &'tx ()>;

/// A connection inside one tenant's transaction.
///
/// It is not a Diesel connection and never dereferences to one: it runs only what
/// [`crate::TenantQuery`] admits (scoped queries built from this connection, scoped writes,
/// global reads), through [`crate::RunTenantQuery`]. Queries are built from it:
/// `Invoice::scoped(conn)`, `Invoice::insert(conn, new)`, and they carry its transaction's
/// lifetime `'tx`, so they cannot run on another transaction's connection. Raw SQL needs an
/// [`AuditedBypass`] and still runs under row-level security, inside this tenant's transaction.
pub struct TenantConn<'tx, A: Access = ReadWrite> {
    conn: &'tx AsyncPgConnection,
    scope: Scope,
    _brand: Brand<'tx>,
    _access: PhantomData<fn() -> A>,
}

impl<'tx, A: Access> TenantConn<'tx, A> {
    pub(crate) fn new(conn: &'tx AsyncPgConnection, scope: Scope) -> Self {
        Self {
            conn,
            scope,
            _brand: PhantomData,
            _access: PhantomData,
        }
    }

    /// The active tenant's id.
    pub fn tenant_id(&self) -> Uuid {
        self.scope.tenant_id
    }

    /// Who acts in this transaction (recorded in audit rows).
    pub fn actor(&self) -> &Actor {
        &self.scope.actor
    }

    /// The request this transaction serves, if any.
    pub fn request_id(&self) -> Option<&str> {
        self.scope.request_id.as_deref()
    }

    pub(crate) fn raw_for_run(&mut self) -> &mut &'tx AsyncPgConnection {
        &mut self.conn
    }

    async fn audit_raw(&self, bypass: &AuditedBypass<'_>) -> Result<(), DbError> {
        let location = bypass.location();
        tracing::warn!(
            actor = bypass.actor.email(),
            action = %bypass.action,
            reason = %bypass.reason,
            tenant_id = %self.scope.tenant_id,
            location = %location,
            "raw SQL inside a tenant transaction (audited bypass)"
        );
        AuditEntry {
            actor: &bypass.actor,
            action: &bypass.action,
            reason: &bypass.reason,
            tenant_id: Some(self.scope.tenant_id),
            request_id: bypass.request_id.as_deref().or(self.request_id()),
            location: Some(&location),
        }
        .write(self.conn)
        .await?;
        Ok(())
    }

    /// Runs raw SQL returning rows, under row-level security, after writing one audit row.
    pub async fn raw_load<U>(
        &mut self,
        bypass: AuditedBypass<'_>,
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
        bypass: AuditedBypass<'_>,
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
