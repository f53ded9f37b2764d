//! The transactions of a [`Db`]: a tenant's (entered through the seal, audited when an Owner
//! enters a tenant it is not a member of), a system job's and the audited bypass's.

use super::*;

/// The audit action of an Owner entering a tenant it is not a member of.
pub(super) const OWNER_ENTRY: &str = "owner.enter";

/// Takes a connection from `pool`, recording a failure in `outage`.
pub(super) async fn checkout(pool: &PgPool, outage: &Outage) -> Result<Pooled, DbError> {
    // Boxed: the pool's future holds the whole of opening a connection (TCP, TLS, startup,
    // the session's checks), kilobytes that would otherwise sit in every transaction's future
    // and in the handler's around it, copied at each of its moves; one allocation is cheaper.
    match Box::pin(pool.get()).await {
        Ok(obj) => Ok(Pooled::new(obj)),
        Err(e) => {
            let e = pool_error(e);
            outage.failed(&e);
            Err(e)
        }
    }
}

impl Db {
    /// Runs `work` in a transaction of `ctx`'s tenant.
    ///
    /// The transaction's `BEGIN` and its entry into the tenant (`tenantry_enter`, signed; see
    /// `seal.rs`) go out pipelined with the first query of `work`, so a one-query transaction
    /// costs two round trips. Before `COMMIT` the transaction asserts its tenant: if the tenant
    /// the database verifies is not `ctx`'s, it rolls back with [`DbError::TenantMoved`].
    /// If `work` fails the transaction rolls back. If the returned future is dropped before it
    /// finishes, the connection is closed rather than returned to the pool, so no open
    /// transaction or setting can reach the next user.
    ///
    /// `work` gets a [`TenantConn`] whose queries (`Invoice::scoped(conn)`) belong to this
    /// transaction alone: they cannot be returned from `work` or run on another connection.
    pub async fn tx<A, T, E, F>(&self, ctx: &TenantCtx<'_, A>, work: F) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        ctx.scope().alive()?;
        self.tx_in(ctx.scope().clone(), work).await
    }

    /// [`Db::tx`] in `scope`'s tenant. An Owner entering a tenant it is not a member of writes
    /// one audit row (action `owner.enter`) in the request's first tenant transaction, before
    /// the work, so the two commit together; if that transaction rolls back, the next one of
    /// the request writes it. A read-only transaction cannot link a row into the audit chain, so
    /// there the row is committed first, in a transaction of its own (as a read-only job's).
    #[tracing::instrument(name = "transaction", level = "info", skip_all, fields(tenant = %scope.tenant_id, request_id = scope.request_id.as_deref()))]
    pub(super) async fn tx_in<A, T, E, F>(&self, scope: Scope, work: F) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        let Some(entry) = scope.owner_entry.clone().filter(|e| e.claim()) else {
            return self.tx_plain(scope, work).await;
        };
        let reason = "an Owner acting in a tenant it is not a member of";
        if A::READ_ONLY {
            let entered = self
                .tx_audited::<crate::ctx::ReadWrite, _, DbError, _>(
                    scope.clone(),
                    OWNER_ENTRY,
                    reason,
                    async |_| Ok(()),
                )
                .await;
            if let Err(e) = entered {
                entry.release();
                return Err(E::from(e));
            }
            return self.tx_plain(scope, work).await;
        }
        let result = self.tx_audited(scope, OWNER_ENTRY, reason, work).await;
        if result.is_err() {
            entry.release();
        }
        result
    }

    /// [`Db::tx`] in `scope`'s tenant, without an Owner's entry to audit.
    pub(super) async fn tx_plain<A, T, E, F>(&self, scope: Scope, work: F) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        let (obj, permit) = self.tenant_checkout(scope.tenant_id).await?;
        let mut guard = TxGuard::new(obj, self.app_outage.clone()).with(permit);
        guard.enter(&self.keys, scope.tenant_id, A::READ_ONLY);
        let result = {
            let conn: &AsyncPgConnection = guard.conn();
            let begin = begin_sql(A::READ_ONLY, &self.tx_settings);
            let mut begin_conn = conn;
            let mut tenant_conn = TenantConn::new(conn, scope, guard.taint());
            let (begun, result) =
                join(begin_conn.batch_execute(&begin), work(&mut tenant_conn)).await;
            if let Err(e) = begun {
                // The work ran without a tenant (row-level security showed it nothing); drop the
                // connection rather than guess its state.
                guard.discard();
                let e = DbError::from(e);
                if e.is_unavailable() {
                    self.app_outage.failed(&e);
                }
                return Err(E::from(e));
            }
            result
        };
        guard.finish(result, &self.keys).await
    }

    /// A read-write tenant transaction in `scope`'s tenant that writes one audit row (`action`,
    /// `reason`, the scope's actor, tenant and request) before `work`, in the same transaction.
    pub(super) async fn tx_audited<A, T, E, F>(
        &self,
        scope: Scope,
        action: &str,
        reason: &str,
        work: F,
    ) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        let (obj, permit) = self.tenant_checkout(scope.tenant_id).await?;
        let mut guard = TxGuard::new(obj, self.app_outage.clone()).with(permit);
        guard.enter(&self.keys, scope.tenant_id, A::READ_ONLY);
        let result = {
            let mut conn: &AsyncPgConnection = guard.conn();
            let started = async {
                conn.batch_execute(&begin_sql(A::READ_ONLY, &self.tx_settings))
                    .await?;
                AuditEntry {
                    actor: &scope.actor,
                    action,
                    reason,
                    tenant_id: Some(scope.tenant_id),
                    request_id: scope.request_id.as_deref(),
                    location: None,
                }
                .write(conn)
                .await
            };
            match started.await {
                Ok(()) => work(&mut TenantConn::new(conn, scope, guard.taint())).await,
                Err(e) => Err(E::from(DbError::from(e))),
            }
        };
        guard.finish(result, &self.keys).await
    }

    /// A system job's transaction inside `scope`'s tenant: one audit row (action `job`) is
    /// written first, in the same transaction. A read-only job's row is committed before a
    /// `READ ONLY` transaction opens for `work`: a read-only transaction cannot link its row
    /// into the audit chain when it commits, and what the work reads is read even if it fails.
    #[tracing::instrument(name = "job_transaction", level = "info", skip_all, fields(tenant = %scope.tenant_id, job = scope.actor.email()))]
    pub(crate) async fn run_job_tx<A, T, E, F>(
        &self,
        scope: Scope,
        reason: &str,
        work: F,
    ) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError>,
    {
        self.fair.tally().job_run(scope.tenant_id);
        if A::READ_ONLY {
            self.tx_audited::<crate::ctx::ReadWrite, _, DbError, _>(
                scope.clone(),
                "job",
                reason,
                async |_| Ok(()),
            )
            .await?;
            return self.tx_plain(scope, work).await;
        }
        self.tx_audited(scope, "job", reason, work).await
    }

    /// Runs cross-tenant `work` on the bypass pool, after writing one `audit_log` row (actor,
    /// action, reason, caller location, time) in the same transaction, and emits a `WARN` event.
    /// If the audit row cannot be written, `work` does not run.
    pub async fn bypass<T, E, F>(&self, bypass: AuditedBypass<'_>, work: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut BypassConn<'_>) -> Result<T, E>,
        E: From<DbError>,
    {
        bypass.alive()?;
        let pool = self.bypass.as_ref().ok_or(DbError::NoBypassPool)?;
        self.fair.tally().bypass(&bypass.action);
        let obj = checkout(pool, &self.bypass_outage).await?;
        let guard = TxGuard::new(obj, self.bypass_outage.clone());
        let result = {
            let mut conn: &AsyncPgConnection = guard.conn();
            let location = bypass.location();
            tracing::warn!(
                actor = bypass.actor.email(),
                action = %bypass.action,
                reason = %bypass.reason,
                location = %location,
                "tenant isolation lifted (audited bypass)"
            );
            conn.batch_execute(&format!("BEGIN{}", self.tx_settings))
                .await
                .map_err(DbError::from)?;
            AuditEntry {
                actor: &bypass.actor,
                action: &bypass.action,
                reason: &bypass.reason,
                tenant_id: None,
                request_id: bypass.request_id.as_deref(),
                location: Some(&location),
            }
            .write(conn)
            .await
            .map_err(DbError::from)?;
            work(&mut BypassConn::new(conn, guard.taint())).await
        };
        guard.finish(result, &self.keys).await
    }

    /// The job queue's bookkeeping on the bypass pool, in one transaction and without an audit
    /// row: it moves jobs between states (claimed, retried, failed); the work a job does runs
    /// in an audited job transaction of its own (`crate::queue`).
    pub(crate) async fn queue_bookkeeping<T, F>(&self, work: F) -> Result<T, DbError>
    where
        F: AsyncFnOnce(&AsyncPgConnection) -> Result<T, DbError>,
    {
        let pool = self.bypass.as_ref().ok_or(DbError::NoBypassPool)?;
        let obj = checkout(pool, &self.bypass_outage).await?;
        let guard = TxGuard::new(obj, self.bypass_outage.clone());
        let result = async {
            let mut conn: &AsyncPgConnection = guard.conn();
            conn.batch_execute(&format!("BEGIN{}", self.tx_settings))
                .await
                .map_err(DbError::from)?;
            work(conn).await
        }
        .await;
        guard.finish(result, &self.keys).await
    }
}

/// `BEGIN [READ ONLY]`, and behind a transaction pooler the session timeouts. The tenant is
/// entered right after it (the seal's entry, spliced in behind this simple query).
pub(super) fn begin_sql(read_only: bool, settings: &str) -> String {
    let mode = if read_only { " READ ONLY" } else { "" };
    format!("BEGIN{mode}{settings}")
}

/// What a connection on which raw SQL ran gets before its transaction ends, behind a transaction
/// pooler (straight to PostgreSQL it is closed instead): nothing the raw SQL left in the session
/// reaches the pooler's next client.
pub(super) const RESET_SESSION_SQL: &str = "RESET ALL; RESET ROLE; RESET SESSION AUTHORIZATION; \
     SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; DEALLOCATE ALL; DISCARD SEQUENCES; \
     DISCARD TEMP";
