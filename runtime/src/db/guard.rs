//! [`TxGuard`]: one transaction's connection, closed rather than returned to the pool unless
//! the transaction finished, and the seal's verdict on it.

use super::*;

/// Owns a pooled connection for the length of one transaction. Unless the transaction is
/// finished (committed or rolled back), dropping the guard cancels whatever statement runs and
/// closes the connection (see `pool/reap.rs`) instead of returning it to the pool.
pub(super) struct TxGuard {
    pub(super) obj: Option<Pooled>,
    pub(super) clean: bool,
    pub(super) outage: Arc<Outage>,
    /// Raw SQL ran on the connection (see [`Taint`]).
    pub(super) taint: Taint,
    /// The tenant entered, and the ticket of its entry.
    pub(super) sealed: Option<(Uuid, Arc<Ticket>)>,
    /// The tenant's turn at the pool (tenant transactions): returned after the connection (the
    /// fields drop in this order), recording the transaction's load.
    pub(super) permit: Option<Permit>,
}

impl TxGuard {
    pub(super) fn new(obj: Pooled, outage: Arc<Outage>) -> Self {
        let behind_pooler = obj.pooler() == Pooler::Transaction;
        Self {
            obj: Some(obj),
            clean: false,
            outage,
            taint: Taint::new(behind_pooler),
            sealed: None,
            permit: None,
        }
    }

    /// Holds `permit` for the length of the transaction and counts its rows.
    pub(super) fn with(mut self, mut permit: Permit) -> Self {
        permit.watch(self.pooled().link());
        self.permit = Some(permit);
        self
    }

    /// Arms the entry into `tenant` right behind the transaction's `BEGIN`.
    pub(super) fn enter(&mut self, keys: &Keys, tenant: Uuid, read_only: bool) {
        let entry = keys.keys.entry(tenant, read_only);
        let pooled = self.pooled();
        let ticket = pooled
            .link()
            .splice(entry.request(&pooled.seal_statements()));
        self.sealed = Some((tenant, ticket));
    }

    pub(super) fn conn(&self) -> &AsyncPgConnection {
        self.obj
            .as_deref()
            .expect("connection present until finish")
    }

    pub(super) fn taint(&self) -> &Taint {
        &self.taint
    }

    pub(super) fn link(&self) -> &Arc<Link> {
        self.pooled().link()
    }

    pub(super) fn pooled(&self) -> &Pooled {
        self.obj.as_ref().expect("connection present until finish")
    }

    pub(super) fn discard(&mut self) {
        if let Some(obj) = self.obj.take() {
            obj.discard();
        }
    }

    /// The transaction committed on its own (an implicit transaction): the connection goes back
    /// to the pool.
    pub(super) fn committed(&mut self) {
        self.clean = true;
        self.outage.succeeded();
    }

    /// Ends the transaction: the tenant asserted and `COMMIT` when `result` is `Ok`, else
    /// `ROLLBACK`. A seal that did not hold turns any result into its error.
    pub(super) async fn finish<T, E: From<DbError>>(
        mut self,
        result: Result<T, E>,
        keys: &Keys,
    ) -> Result<T, E> {
        let commit = result.is_ok();
        let pooler = self.pooled().pooler();
        let tainted = self.taint.is_set();
        let mut conn: &AsyncPgConnection = self.conn();
        let mut assertion = None;
        if commit {
            if let Some((tenant, _)) = &self.sealed {
                let statements = self.pooled().seal_statements();
                assertion = Some(self.link().splice(seal::assertion(*tenant, &statements)));
            }
        }
        let mut ended = Ok(());
        if tainted && pooler == Pooler::Transaction {
            // Raw SQL ran on a server the pooler hands to others next: reset its session inside
            // this transaction, the assertion first (it goes before this batch).
            if !commit {
                let _ = conn
                    .batch_execute(&format!("ROLLBACK TO SAVEPOINT {}", Taint::SAVEPOINT))
                    .await;
            }
            ended = conn.batch_execute(RESET_SESSION_SQL).await;
        }
        let end = if commit && ended.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let closed = conn.batch_execute(end).await;
        if ended.is_ok() {
            ended = closed;
        }
        if let Some(obj) = self.obj.as_ref().filter(|o| o.statement_lost()) {
            // Whatever the work made of the error, the cause is the pooler: name the setting.
            // (The connection is closed when the guard drops it.)
            return Err(E::from(DbError::Pooler(pooler::statement_lost_message(
                obj.pooler(),
            ))));
        }
        if let Some(failure) = self.seal_failure(assertion.as_ref()) {
            self.discard();
            return Err(E::from(failed(failure, keys)));
        }
        match ended {
            Ok(()) => {
                if tainted && pooler == Pooler::Direct {
                    // Raw SQL may have left state in the session: the next transaction gets a
                    // fresh connection instead.
                    self.discard();
                } else {
                    self.clean = true;
                }
                self.outage.succeeded();
                result
            }
            Err(e) => {
                self.discard();
                let e = DbError::from(e);
                if e.is_unavailable() {
                    self.outage.failed(&e);
                }
                match result {
                    Ok(_) => Err(E::from(e)),
                    Err(original) => Err(original),
                }
            }
        }
    }

    /// Whether the entry or the assertion failed (once the transaction ended, both answered).
    pub(super) fn seal_failure(&self, assertion: Option<&Arc<Ticket>>) -> Option<SealFailure> {
        let (_, entry) = self.sealed.as_ref()?;
        let unanswered = || SealFailure::Other("the tenant seal was not answered".into());
        let Some(outcome) = entry.outcome() else {
            return Some(unanswered());
        };
        if let Some(f) = seal::entry_failure(&outcome) {
            return Some(f);
        }
        let assertion = assertion?;
        match assertion.outcome() {
            None => {
                self.link().unsplice(assertion);
                Some(unanswered())
            }
            Some(o) if o.lost => Some(unanswered()),
            Some(o) => o.first.as_ref().map(seal::assertion_failure),
        }
    }
}

/// The error of a seal that did not hold, logged once.
pub(super) fn failed(failure: SealFailure, keys: &Keys) -> DbError {
    match failure {
        SealFailure::Moved => {
            tracing::error!(
                "a tenant transaction's tenant moved before it ended (the setting \
                 tenantry.tenant was changed by SQL it ran): rolled back"
            );
            DbError::TenantMoved
        }
        SealFailure::Aborted => DbError::RolledBack,
        other => {
            if seal::stale_key(&other) {
                keys.refresh_now();
            }
            DbError::Seal(other.to_string())
        }
    }
}

impl Drop for TxGuard {
    fn drop(&mut self) {
        if !self.clean {
            self.discard();
        }
    }
}
