//! Errors of the database layer and of scoping.

use thiserror::Error;

use crate::schema::RoleEscalation;

/// An error from a tenant transaction, a bypass or the pools behind them.
#[derive(Debug, Error)]
pub enum DbError {
    /// A query failed (this includes `NotFound` from `.first`/`.get_result`).
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// A bypass or a job was opened with an empty reason (`tenantry::no_tenant_scope`), so
    /// that a job's work can use `DbError` as its error type.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// No connection could be taken from the pool.
    #[error("database pool: {0}")]
    Pool(String),
    /// A connection could not be established.
    #[error("database connection: {0}")]
    Connection(#[from] diesel::ConnectionError),
    /// The role of the tenant pool ignores row-level security.
    #[error(
        "TENANTRY_APP_DATABASE_URL: the tenant connection's role `{role}` is a superuser or has BYPASSRLS, so row-level security would not apply; connect with a role like `tenantry_app` (NOSUPERUSER NOBYPASSRLS)"
    )]
    PrivilegedAppRole {
        /// The offending role.
        role: String,
    },
    /// The role of the tenant pool can step outside row-level security: it owns a tenant table
    /// or has `CREATEROLE`, or it is a member (directly or through other roles, inheriting or
    /// not) of a role that is a superuser, has `BYPASSRLS`, owns a tenant table or has
    /// `CREATEROLE`. A member takes the other role's powers with `SET ROLE` or
    /// `set_config('role', ..)`.
    #[error(
        "TENANTRY_APP_DATABASE_URL: {escalation}, so row-level security would not hold for the tenant pool; {fix}, or connect as a role like `tenantry_app` that owns no tenant table and is a member of no such role",
        fix = .escalation.fix()
    )]
    AppRoleEscalates {
        /// The first way out found (the shortest chain of memberships).
        escalation: RoleEscalation,
    },
    /// No bypass pool was configured, yet a bypass was opened.
    #[error("no bypass database URL is configured, so audited cross-tenant work cannot run")]
    NoBypassPool,
    /// A settings or URL problem found while building the pools.
    #[error("{0}")]
    Config(String),
    /// The database did not answer in time (see [`Db::ping`](crate::db::Db::ping)).
    #[error("{0}")]
    Timeout(String),
    /// A connection pooler between tenantry and PostgreSQL breaks what this configuration needs
    /// (see [`crate::pool::pooler`]); the message names the setting to change.
    #[error("{0}")]
    Pooler(String),
    /// The transaction's tenant moved before it ended: the tenant the database verified at the
    /// end was not the one the transaction entered, because SQL it ran changed the tenant
    /// setting. The transaction was rolled back (nothing it did is kept) and one `ERROR` line
    /// logged.
    #[error("the transaction's tenant moved before it ended (SQL it ran changed the tenant setting), so it was rolled back")]
    TenantMoved,
    /// The work of a transaction returned `Ok`, but a statement inside it had failed (an error
    /// the work did not return), so PostgreSQL rolled the transaction back: nothing it did is
    /// kept.
    #[error("the transaction was rolled back: a statement in it failed, though the work returned Ok (an error was not propagated)")]
    RolledBack,
    /// The database refused the transaction's entry into its tenant (the tenant seal): an
    /// unknown or expired tenant key (the keys are read again at once), a clock more than five
    /// minutes from the database's, or a database without tenantry's migrations.
    #[error("tenant seal: {0}")]
    Seal(String),
    /// The tenant holds its whole share of the tenant pool and its queue is full, or its wait
    /// for a turn ran out (see [`FairShare`](crate::fairness::FairShare)): its own excess, not
    /// the service's outage. Answer 429 with `Retry-After`; other tenants are served meanwhile.
    #[error("too many requests of this tenant at once: {0}")]
    TenantBusy(String),
    /// What a request's extractor granted (its `TenantCtx`, an Owner's proof, a bypass opened
    /// with it) was used after the request ended: it was kept somewhere that outlives requests
    /// (a `static`, the router's state, a spawned task, a channel). Nothing ran; one `ERROR`
    /// line is logged. Work that continues after a response belongs in a system job.
    #[error(
        "refused: the `{grant}` of request {request_id} was used after its request ended; a request's context, proofs and bypasses end with it (not in a static, the router's state, a spawned task or a channel): continue work after the response in a system job (`Jobs`)"
    )]
    RequestEnded {
        /// What was granted: `InTenant<Partner>`, `AsOwner`, ...
        grant: &'static str,
        /// The request it belonged to.
        request_id: String,
    },
    /// A system job was started, or the `Jobs` capability made, from a task that serves a
    /// request (a `Jobs` reached from the router's state, behind a lock or in a static). Nothing
    /// ran; one `ERROR` line is logged.
    #[error(
        "refused: {what} in a task that serves a request; system jobs run in the job runner that `main` hands `Jobs` to (see the README's \"Cross-tenant work\"), never from a handler: move the work there, or act in the request's own tenant with its `TenantCtx`"
    )]
    JobInRequest {
        /// What was refused: "a system job", "`Db::connect_with_jobs`".
        what: &'static str,
    },
    /// `Db::connect_with_jobs` was called again for a database whose `Jobs` this process already
    /// made: the capability exists once per process and database, where `main` put it.
    #[error(
        "refused: this process already made the `Jobs` of database {database}; make it once, in `main` (`let (db, jobs) = Db::connect_with_jobs(config).await?`), and hand it to the job runner; a test kit of your own makes one per test with `tenantry::testing::jobs_for_test(&db)` (feature `testing`)"
    )]
    JobsAlreadyMade {
        /// The database (its name and the server's system identifier).
        database: String,
    },
    /// A queued job's lease ran out while it ran and another runner claimed it again, so this
    /// run's work was rolled back (the job's work commits once, with the run that marks it
    /// done). Give the queue a longer lease (`Queue::lease`) than its jobs take.
    #[error("queued job {id}: its lease ran out and another runner claimed it, so this run was rolled back; give the queue a lease longer than its jobs take")]
    JobLeaseLost {
        /// The job.
        id: uuid::Uuid,
    },
}

impl DbError {
    /// Whether this is Diesel's `NotFound` (no row matched, which includes another tenant's row).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(diesel::result::Error::NotFound))
    }

    /// Whether the tenant was refused for its own excess ([`DbError::TenantBusy`]): answer 429
    /// with `Retry-After`.
    pub fn is_tenant_busy(&self) -> bool {
        matches!(self, DbError::TenantBusy(_))
    }

    /// Whether the database was unavailable rather than the request wrong: no connection, a
    /// connection lost, a timeout, a cancelled statement. Answer these with 503 and retry later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Connection(_) | DbError::Timeout(_) => true,
            DbError::Query(e) => DbError::is_unavailable_query(e),
            // A refused entry is this process's keys or clock, for a moment (a rotation) or
            // until it is fixed: retry later.
            DbError::Seal(_) => true,
            DbError::PrivilegedAppRole { .. }
            | DbError::AppRoleEscalates { .. }
            | DbError::NoBypassPool
            | DbError::Scope(_)
            | DbError::Config(_)
            | DbError::Pooler(_)
            | DbError::TenantMoved
            | DbError::RolledBack
            | DbError::TenantBusy(_)
            | DbError::RequestEnded { .. }
            | DbError::JobInRequest { .. }
            | DbError::JobsAlreadyMade { .. }
            | DbError::JobLeaseLost { .. } => false,
        }
    }

    /// [`DbError::is_unavailable`] for a query's error: the connection failed (no SQLSTATE),
    /// or the server cancelled or refused the statement for a reason of its own (statement or
    /// lock timeout, cancel request, deadlock, serialization failure, shutdown, too many
    /// clients).
    ///
    /// Diesel does not expose the SQLSTATE of other errors, so those are recognised by
    /// PostgreSQL's message, which is English unless the server sets `lc_messages` otherwise.
    pub fn is_unavailable_query(e: &diesel::result::Error) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        const TRANSIENT: [&str; 7] = [
            "canceling statement due to",
            "terminating connection",
            "could not obtain lock",
            "deadlock detected",
            "the database system is",
            "too many clients",
            "remaining connection slots are reserved",
        ];
        match e {
            Error::DatabaseError(Kind::UnableToSendCommand | Kind::ClosedConnection, _)
            | Error::DatabaseError(Kind::SerializationFailure, _) => true,
            Error::DatabaseError(_, info) => {
                let message = info.message();
                TRANSIENT.iter().any(|m| message.contains(m))
            }
            _ => false,
        }
    }
}

/// An error opening an audited bypass.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScopeError {
    /// The bypass reason was empty or only whitespace.
    #[error(
        "a bypass needs a non-empty reason: the audit log records why tenant isolation was lifted"
    )]
    EmptyReason,
}
