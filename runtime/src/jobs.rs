//! [`Jobs`]: the capability of audited background work, made once in `main`, never reachable from
//! a request handler by accident.
//!
//! A request acts only in the tenant its identity may act in, with its role's rights. Background
//! work (reminders, reports, imports) has no request: it names a tenant by id or works across
//! tenants. That power is the bypass role's, so it is a capability of its own: [`Jobs`], made by
//! [`crate::Db::connect_with_jobs`] from the bypass configuration. It is neither `Clone` nor
//! `Sync`: the router's state (which must be `Clone + Send + Sync + 'static`) cannot hold it,
//! nor an `Arc` of it, and the [`SystemJob`]s it names borrow it, so they cannot be stored there
//! either. Putting it behind a `Mutex` in the state is possible, and is the visible, deliberate
//! act a reviewer sees.

use std::borrow::Cow;
use std::cell::Cell;
use std::marker::PhantomData;

use uuid::Uuid;

use crate::bypass::{sealed, BypassActor};
use crate::conn::TenantConn;
use crate::ctx::{Access, Actor, ReadOnly, ReadWrite, Scope};
use crate::db::Db;
use crate::error::{DbError, ScopeError};

/// Keeps [`Jobs`] out of shared state: `Send` (a job runner task may own it) but not `Sync`.
#[derive(Debug, Default)]
struct KeptOutOfRequestState(PhantomData<Cell<()>>);

/// The capability of audited system jobs: work inside a tenant named by id
/// ([`SystemJob::tx`], [`SystemJob::read_only_tx`]) or across tenants
/// (`db.bypass(no_tenant_scope!(&job, ".."), ..)`).
///
/// Made once, in `main`, by [`crate::Db::connect_with_jobs`]; hand it to the task that runs
/// the jobs. It is neither `Clone` nor `Sync`: the router's state (which must be
/// `Clone + Send + Sync + 'static`) cannot hold it, nor an `Arc` of it, and the [`SystemJob`]s it
/// names borrow it, so they cannot be stored there either. Putting it behind a `Mutex` in the
/// state is possible, and is the visible, deliberate act a reviewer sees.
#[derive(Debug)]
pub struct Jobs {
    db: Db,
    _kept: KeptOutOfRequestState,
}

impl Jobs {
    pub(crate) fn new(db: Db) -> Self {
        Self {
            db,
            _kept: KeptOutOfRequestState::default(),
        }
    }

    /// A named job (for example `"nightly-invoice-reminders"`): the actor its audit rows name
    /// (`job:<name>`). It borrows this capability, so it lives no longer than it.
    pub fn job(&self, name: impl Into<Cow<'static, str>>) -> SystemJob<'_> {
        SystemJob {
            name: name.into(),
            db: self.db.clone(),
            _jobs: PhantomData,
        }
    }
}

/// A named background job, the non-human actor of audited work (`audit_log.actor_email` is
/// `job:<name>`). Only [`Jobs::job`] makes one.
#[derive(Debug)]
pub struct SystemJob<'j> {
    name: Cow<'static, str>,
    db: Db,
    _jobs: PhantomData<&'j ()>,
}

impl SystemJob<'_> {
    /// Not available: a job comes from the [`Jobs`] capability (`jobs.job("name")`). This exists
    /// only to say so at compile time.
    #[doc(hidden)]
    pub fn named<N: JobsOnly>(_name: N) -> Self {
        unreachable!("JobsOnly has no implementations")
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn scope(&self, tenant_id: Uuid) -> Scope {
        Scope {
            tenant_id,
            actor: Actor::job(&self.name),
            request_id: None,
            owner_entry: None,
        }
    }

    /// Runs `work` as this job inside `tenant_id`, read-write, writing one audit row (action
    /// `job`, the job as actor, `reason`) in the same transaction first. A blank reason is
    /// [`ScopeError::EmptyReason`] and nothing runs.
    pub async fn tx<T, E, F>(&self, tenant_id: Uuid, reason: &str, work: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut TenantConn<'_, ReadWrite>) -> Result<T, E>,
        E: From<DbError> + From<ScopeError>,
    {
        self.run::<ReadWrite, T, E, F>(tenant_id, reason, work)
            .await
    }

    /// Like [`SystemJob::tx`], for work that only reads (an export, a report of one tenant):
    /// writes do not compile, and the work runs in a `READ ONLY` transaction. Its audit row is
    /// written and committed just before (a read-only transaction cannot link a row into the
    /// audit chain at its commit), so the row stays even if the work then fails: what it read,
    /// it read.
    pub async fn read_only_tx<T, E, F>(
        &self,
        tenant_id: Uuid,
        reason: &str,
        work: F,
    ) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut TenantConn<'_, ReadOnly>) -> Result<T, E>,
        E: From<DbError> + From<ScopeError>,
    {
        self.run::<ReadOnly, T, E, F>(tenant_id, reason, work).await
    }

    async fn run<A, T, E, F>(&self, tenant_id: Uuid, reason: &str, work: F) -> Result<T, E>
    where
        A: Access,
        F: AsyncFnOnce(&mut TenantConn<'_, A>) -> Result<T, E>,
        E: From<DbError> + From<ScopeError>,
    {
        if reason.trim().is_empty() {
            return Err(E::from(ScopeError::EmptyReason));
        }
        tracing::info!(job = %self.name, %tenant_id, reason, read_only = A::READ_ONLY, "system job inside a tenant");
        self.db
            .run_job_tx(self.scope(tenant_id), reason, work)
            .await
    }
}

impl sealed::Sealed for SystemJob<'_> {}
impl BypassActor for SystemJob<'_> {
    fn bypass_actor(&self) -> Actor {
        Actor::job(&self.name)
    }
}

mod sealed_jobs {
    pub trait Sealed {}
}

/// Never implemented: carries the compile error of `SystemJob::named(..)`.
#[diagnostic::on_unimplemented(
    message = "a `SystemJob` comes from the `Jobs` capability, not from a name",
    label = "any code could act in any tenant this way",
    note = "make the capability once in `main` with `let (db, jobs) = Db::connect_with_jobs(config).await?`, hand `jobs` to the task that runs jobs, and name a job there: `let job = jobs.job(\"nightly-reminders\")`"
)]
pub trait JobsOnly: sealed_jobs::Sealed {}
