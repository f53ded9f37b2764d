//! The connections handed to transaction closures: [`TenantConn`] and [`BypassConn`].

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use diesel::pg::Pg;
use diesel::query_builder::{QueryId, SqlQuery};
use diesel::QueryResult;
use diesel::QueryableByName;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::ctx::audit::AuditEntry;
use crate::ctx::bypass::AuditedBypass;
use crate::ctx::{Access, Actor, ReadWrite, Scope};
use crate::error::DbError;

/// Whether SQL that tenantry cannot see into ran in a transaction (raw SQL, or a bypass query
/// whose text is not fixed by its type): it may have left state in the session (a setting, an
/// advisory lock, a prepared statement, a role), so the connection is closed afterwards, or,
/// behind a transaction pooler (whose server connection outlives ours), its session is reset
/// before the transaction ends.
#[derive(Debug)]
pub(crate) struct Taint {
    set: AtomicBool,
    behind_pooler: bool,
}

impl Taint {
    /// The savepoint taken before the first raw statement behind a transaction pooler, so that
    /// the session can still be reset when the transaction failed after it.
    pub(crate) const SAVEPOINT: &'static str = "tenantry_raw";

    pub(crate) fn new(behind_pooler: bool) -> Self {
        Taint {
            set: AtomicBool::new(false),
            behind_pooler,
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        AtomicBool::load(&self.set, Ordering::Acquire)
    }

    /// Marks the transaction tainted before SQL of unknown effect runs on `conn`.
    async fn mark(&self, mut conn: &AsyncPgConnection) -> QueryResult<()> {
        use diesel_async::SimpleAsyncConnection;
        if !self.set.swap(true, Ordering::AcqRel) && self.behind_pooler {
            conn.batch_execute(&format!("SAVEPOINT {}", Self::SAVEPOINT))
                .await?;
        }
        Ok(())
    }
}

/// Ties a value to one transaction: invariant in `'tx`, so a query built from one transaction's
/// connection cannot run on another's (each transaction's closure gets a fresh `'tx`).
pub(crate) type Brand<'tx> = PhantomData<fn(&'tx ()) -> &'tx ()>;

/// A connection inside one tenant's transaction.
///
/// It is not a Diesel connection and never dereferences to one: it runs only what
/// [`crate::scope::TenantQuery`] admits (scoped queries built from this connection, scoped writes,
/// global reads), through [`crate::scope::RunTenantQuery`]. Queries are built from it:
/// `Invoice::scoped(conn)`, `Invoice::insert(conn, new)`, and they carry its transaction's
/// lifetime `'tx`, so they cannot run on another transaction's connection. Raw SQL needs an
/// [`AuditedBypass`] and still runs under row-level security, inside this tenant's transaction.
pub struct TenantConn<'tx, A: Access = ReadWrite> {
    conn: &'tx AsyncPgConnection,
    scope: Scope,
    taint: &'tx Taint,
    _brand: Brand<'tx>,
    _access: PhantomData<fn() -> A>,
}

impl<'tx, A: Access> TenantConn<'tx, A> {
    pub(crate) fn new(conn: &'tx AsyncPgConnection, scope: Scope, taint: &'tx Taint) -> Self {
        Self {
            conn,
            scope,
            taint,
            _brand: PhantomData,
            _access: PhantomData,
        }
    }

    /// The tenant that row-level security sees in this transaction now: the tenant the database
    /// verifies from the seal (`tenantry_tenant()`), `None` if no seal verifies. Always
    /// [`TenantConn::tenant_id`] unless SQL run in the transaction tampered with the seal.
    #[allow(
        clippy::disallowed_methods,
        reason = "a literal read of the seal's view, tenantry's own SQL"
    )]
    pub async fn verified_tenant(&mut self) -> QueryResult<Option<Uuid>> {
        let mut conn = self.conn;
        diesel::select(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Uuid>,
        >(concat!(
            "(SELECT tenant_id FROM ",
            schema_name!(),
            ".tenantry_current_tenant)"
        )))
        .get_result(&mut conn)
        .await
    }

    /// The transaction's connection, for tenantry's own statements (the job queue's).
    pub(crate) fn pg(&self) -> &'tx AsyncPgConnection {
        self.conn
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
        bypass.alive()?;
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
        self.taint.mark(self.conn).await?;
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
        self.taint.mark(self.conn).await?;
        let mut conn = self.conn;
        Ok(query.execute(&mut conn).await?)
    }
}

/// A connection of audited cross-tenant work, on the bypass role (which ignores row-level
/// security). Only [`crate::db::Db::bypass`] hands one out, after writing the audit row.
pub struct BypassConn<'a> {
    conn: &'a AsyncPgConnection,
    taint: &'a Taint,
}

impl<'a> BypassConn<'a> {
    pub(crate) fn new(conn: &'a AsyncPgConnection, taint: &'a Taint) -> Self {
        Self { conn, taint }
    }

    /// The Diesel connection, for `diesel_async::RunQueryDsl` in a module that does not import
    /// tenantry's prelude. Prefer the methods below. What runs through it is unknown to
    /// tenantry, so the connection is closed (or its session reset) once the bypass ends.
    pub fn diesel(&mut self) -> &mut &'a AsyncPgConnection {
        // Marked without the savepoint a transaction pooler would get (this is not async):
        // the session is still reset before the transaction ends.
        self.taint.set.store(true, Ordering::Release);
        &mut self.conn
    }

    /// Loads all rows of any Diesel query, across tenants.
    pub fn load<'c, U, Q>(
        &'c mut self,
        query: Q,
    ) -> impl Future<Output = QueryResult<Vec<U>>> + Send + use<'a, 'c, U, Q>
    where
        Q: LoadQuery<'c, &'a AsyncPgConnection, U> + diesel::query_builder::AsQuery + Send + 'c,
        Q::Query: QueryId,
        U: Send + 'c,
    {
        let (conn, taint) = (self.conn, self.taint);
        async move {
            if !Q::Query::HAS_STATIC_QUERY_ID {
                taint.mark(conn).await?;
            }
            let mut conn = conn;
            RunQueryDsl::load(query, &mut conn).await
        }
    }

    /// Loads exactly one row of any Diesel query, across tenants.
    pub fn get_result<'c, U, Q>(
        &'c mut self,
        query: Q,
    ) -> impl Future<Output = QueryResult<U>> + Send + use<'a, 'c, U, Q>
    where
        Q: LoadQuery<'c, &'a AsyncPgConnection, U> + diesel::query_builder::AsQuery + Send + 'c,
        Q::Query: QueryId,
        U: Send + 'c,
    {
        let (conn, taint) = (self.conn, self.taint);
        async move {
            if !Q::Query::HAS_STATIC_QUERY_ID {
                taint.mark(conn).await?;
            }
            let mut conn = conn;
            RunQueryDsl::get_result(query, &mut conn).await
        }
    }

    /// Runs any Diesel statement, across tenants; returns the number of rows touched.
    pub fn execute<'c, Q>(
        &'c mut self,
        query: Q,
    ) -> impl Future<Output = QueryResult<usize>> + Send + use<'a, 'c, Q>
    where
        Q: ExecuteDsl<&'a AsyncPgConnection> + QueryId + Send + 'c,
    {
        let (conn, taint) = (self.conn, self.taint);
        async move {
            if !Q::HAS_STATIC_QUERY_ID {
                taint.mark(conn).await?;
            }
            let mut conn = conn;
            RunQueryDsl::execute(query, &mut conn).await
        }
    }
}
