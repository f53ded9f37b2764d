//! [`Jobs`]: the capability of audited background work, made once in `main`, never reachable from
//! a request handler by accident.
//!
//! A request acts only in the tenant its identity may act in, with its role's rights. Background
//! work (reminders, reports, imports) has no request: it names a tenant by id or works across
//! tenants. That power is the bypass role's, so it is a capability of its own: [`Jobs`], made by
//! [`crate::db::Db::connect_with_jobs`] from the bypass configuration, once per process and
//! database. It is neither `Clone` nor `Sync`: the router's state (which must be
//! `Clone + Send + Sync + 'static`) cannot hold it, nor an `Arc`, an `RwLock` or a `OnceLock` of
//! it, and the [`SystemJob`]s it names borrow it, so they cannot be stored there either. What the
//! compiler cannot refuse (a `Mutex<Jobs>` in the state, a `static` of one) is refused at run
//! time: no job starts, and no `Jobs` is made, in a task that serves a request.
use std::borrow::Cow;
use std::cell::UnsafeCell;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::{Mutex, OnceLock};

use uuid::Uuid;

use crate::ctx::bypass::{sealed, BypassActor, Liveness};
use crate::ctx::conn::TenantConn;
use crate::ctx::life::outside_requests;
use crate::ctx::{Access, Actor, ReadOnly, ReadWrite, Scope};
use crate::db::{Db, DbConfig};
use crate::error::{DbError, ScopeError};

/// Keeps [`Jobs`] out of shared state: `Send` (a job runner task may own it) but not `Sync`.
/// rustc names the innermost type that is not `Sync` in its error, so this type's name is the
/// advice a user gets for `Arc<Jobs>` or `Jobs` in the router's state.
#[derive(Debug, Default)]
struct KeptOutOfRequestState(PhantomData<UnsafeCell<GiveJobsToTheJobRunnerNotTheRouterState>>);

/// Never made: its name is what rustc prints when `Jobs` would be shared with request handlers
/// ("`UnsafeCell<GiveJobsToTheJobRunnerNotTheRouterState>` cannot be shared between threads
/// safely"): `main` moves `Jobs` into the task that runs jobs (see the README's "Cross-tenant
/// work").
#[derive(Debug)]
enum GiveJobsToTheJobRunnerNotTheRouterState {}

/// The capability of audited system jobs: work inside a tenant named by id
/// ([`SystemJob::tx`], [`SystemJob::read_only_tx`]) or across tenants
/// (`db.bypass(no_tenant_scope!(&job, ".."), ..)`).
///
/// Made once, in `main`, by [`crate::db::Db::connect_with_jobs`]; hand it to the task that runs
/// the jobs:
///
/// ```text
/// let (db, jobs) = Db::connect_with_jobs(config).await?;
/// tokio::spawn(job_runner(db.clone(), jobs));    // the job runner owns `Jobs`
/// let app = router(AppState { db, .. });          // no `jobs` in the state
/// ```
///
/// It is neither `Clone` nor `Sync`: the router's state (which must be
/// `Clone + Send + Sync + 'static`) cannot hold it, nor an `Arc`, `RwLock` or `OnceLock` of it,
/// and the [`SystemJob`]s it names borrow it, so they cannot be stored there either. What the
/// compiler lets through is refused at run time:
///
/// - a second `Db::connect_with_jobs` for the same database in one process
///   ([`DbError::JobsAlreadyMade`]), so a handler that holds the settings cannot make its own;
/// - `Db::connect_with_jobs`, a job transaction or a job's bypass in a task that serves a request
///   ([`DbError::JobInRequest`]): a `Mutex<Jobs>` in the state or a `static` reaches every
///   handler, and none of them may use it. (A task the handler spawns is not a request's task;
///   that takes a deliberate `tokio::spawn` of the lock's holder.)
///
/// Tests that make many `Jobs` for one database use `tenantry::testing::jobs_for_test(&db)`.
#[derive(Debug)]
pub struct Jobs {
    db: Db,
    _kept: KeptOutOfRequestState,
}

/// The databases whose `Jobs` this process made.
fn made() -> &'static Mutex<HashSet<String>> {
    static MADE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    MADE.get_or_init(Default::default)
}

impl Db {
    /// [`Db::connect`], and the [`Jobs`] capability of this application's background work: audited
    /// system jobs that act inside any tenant by id or across tenants.
    ///
    /// Call it once, in `main`, and hand the `Jobs` to the tasks that run jobs, never to the
    /// router: nothing else makes one, and it cannot be cloned or shared (`Arc<Jobs>` is not
    /// `Send`), so request handlers cannot reach it without a visible, deliberate act. It needs
    /// the bypass URL: a job has the power of the bypass role.
    ///
    /// Refused ([`DbError::JobInRequest`]) in a task that serves a request, and
    /// ([`DbError::JobsAlreadyMade`]) when this process already made the `Jobs` of the same
    /// database (see [`Jobs`]).
    pub async fn connect_with_jobs(config: DbConfig) -> Result<(Self, Jobs), DbError> {
        if config.bypass_url.is_none() {
            return Err(DbError::NoBypassPool);
        }
        crate::ctx::life::outside_requests("`Db::connect_with_jobs`")?;
        let db = Self::connect(config).await?;
        let jobs = Jobs::once_per_database(&db).await?;
        Ok((db, jobs))
    }
}

impl Jobs {
    fn new(db: Db) -> Self {
        Self {
            db,
            _kept: KeptOutOfRequestState::default(),
        }
    }

    /// The `Jobs` of `db`'s database, unless this process already made them
    /// ([`DbError::JobsAlreadyMade`]; the pools just made are closed).
    pub(crate) async fn once_per_database(db: &Db) -> Result<Self, DbError> {
        let database = match db.database_identity().await {
            Ok(database) => database,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        let first = made()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(database.clone());
        if !first {
            db.close();
            tracing::error!(%database, "refused: a second `Jobs` for one database in this process");
            return Err(DbError::JobsAlreadyMade { database });
        }
        Ok(Self::new(db.clone()))
    }

    /// The database this capability acts on.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// A `Jobs` outside the once-per-database count, for the test kit (`jobs_for_test`).
    #[cfg(feature = "testing")]
    pub(crate) fn for_test(db: &Db) -> Self {
        Self::new(db.clone())
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
            life: None,
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
        outside_requests("a system job")?;
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

    fn liveness(&self) -> Liveness {
        Liveness::OutsideRequests
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
