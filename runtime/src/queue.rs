//! The durable per-tenant job queue: a request asks for background work in its own tenant, and
//! the process that holds [`Jobs`] runs it there, audited.
//!
//! - **Enqueue** from a tenant transaction: `conn.enqueue("send-invoice", &payload)`. The job's
//!   tenant is the transaction's, never the payload's; a viewer's read-only connection has no
//!   `enqueue`, and the row lives in `tenantry_jobs`, a tenant table under row-level security.
//!   The job is stored with the transaction's other writes, or not at all.
//! - **Run** in the job runner, which owns `Jobs`: [`Jobs::queue`] names the jobs it runs,
//!   [`Queue::next`] claims one due job of any tenant (`FOR UPDATE SKIP LOCKED`, with a lease),
//!   and [`Claimed::run`] runs the work inside the job's tenant in an audited job transaction
//!   (actor `job:queue:<name>`) that also marks the job done, so its work and its completion
//!   commit together.
//! - **Retries**: work that fails rolls back and the job is queued again after 2, 4, 8, ..
//!   seconds (at most an hour), until its attempts (5 by default) are spent; then it is
//!   `failed`, with its last error, where the tenant's own code can read it
//!   ([`TenantConn::queued_jobs`]).
//! - **Nothing lost**: a process that dies mid-job leaves the job `running` with a lease;
//!   when the lease runs out, the next claim takes it again (its rolled-back work runs again).
//! - **On Citus** `tenantry_jobs` is distributed by `tenant_id` like the other tenant tables,
//!   and Citus runs `FOR UPDATE` only in a query of one shard. So there a claim first reads,
//!   without locks, the tenants with due jobs (oldest due job first, one query of every shard),
//!   then claims in one tenant at a time with the same `FOR UPDATE SKIP LOCKED` statement
//!   filtered by that tenant (a router query, one shard) until one yields a job. Every other
//!   statement of the queue names its tenant and runs on one shard.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Double, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::ctx::life::outside_requests;
use crate::ctx::TenantConn;
use crate::ctx::{Access, CanWrite, ReadWrite};
use crate::error::{DbError, ScopeError};
use crate::jobs::Jobs;

/// Jobs whose lease ran out on their last attempt: failed, not claimed again.
const EXHAUSTED: &str = concat!("UPDATE ", schema_name!(), ".tenantry_jobs SET state = 'failed', locked_until = NULL, \
     finished_at = now(), last_error = 'the lease ran out on its last attempt (the process running it stopped)' \
     WHERE state = 'running' AND locked_until < now() AND attempts >= max_attempts");

/// One due job of the named kinds, oldest first, skipping jobs other runners hold.
const CLAIM: &str = concat!("UPDATE ", schema_name!(), ".tenantry_jobs j SET state = 'running', attempts = j.attempts + 1, \
     locked_until = now() + make_interval(secs => $1) \
     FROM (SELECT tenant_id, id FROM ", schema_name!(), ".tenantry_jobs \
           WHERE name = ANY($2) \
             AND ((state = 'queued' AND run_after <= now()) OR (state = 'running' AND locked_until < now())) \
           ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED) due \
     WHERE j.tenant_id = due.tenant_id AND j.id = due.id \
     RETURNING j.tenant_id, j.id, j.name, j.payload::text AS payload, j.attempts, j.max_attempts");

/// On Citus, the tenants with due jobs of the named kinds, the oldest due job first (no locks:
/// one query of every shard).
const DUE_TENANTS: &str = concat!("SELECT tenant_id AS id FROM ", schema_name!(), ".tenantry_jobs \
     WHERE name = ANY($1) \
       AND ((state = 'queued' AND run_after <= now()) OR (state = 'running' AND locked_until < now())) \
     GROUP BY tenant_id ORDER BY min(run_after) LIMIT 16");

/// On Citus, [`CLAIM`] in the tenant `$3`: a router query (one shard), where `FOR UPDATE` runs.
const CLAIM_IN_TENANT: &str = concat!("UPDATE ", schema_name!(), ".tenantry_jobs j SET state = 'running', attempts = j.attempts + 1, \
     locked_until = now() + make_interval(secs => $1) \
     FROM (SELECT tenant_id, id FROM ", schema_name!(), ".tenantry_jobs \
           WHERE tenant_id = $3 AND name = ANY($2) \
             AND ((state = 'queued' AND run_after <= now()) OR (state = 'running' AND locked_until < now())) \
           ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED) due \
     WHERE j.tenant_id = $3 AND j.id = due.id \
     RETURNING j.tenant_id, j.id, j.name, j.payload::text AS payload, j.attempts, j.max_attempts");

/// The run's failure, with attempts left: queued again after a backoff (2^attempt seconds, at
/// most an hour). `$4` is the run's attempt, which the row must still have: the statement uses
/// it rather than the column, since Citus refuses `now()` beside a column in an `UPDATE`.
const RETRY: &str = concat!(
    "UPDATE ",
    schema_name!(),
    ".tenantry_jobs SET state = 'queued', \
     run_after = now() + make_interval(secs => least(power(2, $4), 3600)), \
     last_error = left($3, 2000), locked_until = NULL \
     WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND attempts = $4 \
     RETURNING state"
);

/// The run's failure on its last attempt: failed (as [`RETRY`], without a `CASE`: Citus refuses
/// `now()` in one).
const GIVE_UP: &str = concat!(
    "UPDATE ",
    schema_name!(),
    ".tenantry_jobs SET state = 'failed', finished_at = now(), \
     last_error = left($3, 2000), locked_until = NULL \
     WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND attempts = $4 \
     RETURNING state"
);

/// Inside the job's own transaction, under row-level security: done, if this run still holds it.
const DONE: &str = concat!(
    "UPDATE ",
    schema_name!(),
    ".tenantry_jobs SET state = 'done', finished_at = now(), \
     locked_until = NULL, last_error = NULL \
     WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND attempts = $3"
);

const ENQUEUE: &str = concat!(
    "INSERT INTO ",
    schema_name!(),
    ".tenantry_jobs (tenant_id, name, payload) VALUES ($1, $2, $3::jsonb) RETURNING id"
);

/// Filtered by the transaction's tenant as well as row-level security: on Citus, one shard.
const LIST: &str = concat!(
    "SELECT id, name, payload::text AS payload, state, attempts, max_attempts, \
     last_error, created_at, finished_at FROM ",
    schema_name!(),
    ".tenantry_jobs WHERE tenant_id = $1 \
     ORDER BY created_at DESC LIMIT 100"
);

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    state: String,
}

/// A job of this tenant's queue, as [`TenantConn::queued_jobs`] reads it.
#[derive(Debug, Clone, QueryableByName)]
pub struct QueuedJob {
    /// The job.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// Its kind, as enqueued.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Its payload (JSON text).
    #[diesel(sql_type = Text)]
    pub payload: String,
    /// `queued`, `running`, `done` or `failed`.
    #[diesel(sql_type = Text)]
    pub state: String,
    /// Runs started so far.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    /// Runs it may take before it is `failed`.
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
    /// The last failed run's error.
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    /// When it was enqueued.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// When it ended, `done` or `failed`.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl<A: Access> TenantConn<'_, A> {
    /// Queues the job `name` (lowercase letters, digits, `.`, `_`, `:`, `-`; at most 64) with
    /// `payload` in this transaction's tenant; it is stored with the transaction's other writes
    /// and run by the job runner ([`Jobs::queue`]) inside the same tenant. Returns its id.
    #[allow(
        clippy::disallowed_methods,
        reason = "tenantry's own literal statement; the tenant is the transaction's, bound"
    )]
    pub async fn enqueue(
        &mut self,
        name: &str,
        payload: &serde_json::Value,
    ) -> Result<Uuid, DbError>
    where
        A: CanWrite,
    {
        let mut conn = self.pg();
        let row: IdRow = diesel::sql_query(ENQUEUE)
            .bind::<SqlUuid, _>(self.tenant_id())
            .bind::<Text, _>(name)
            .bind::<Text, _>(payload.to_string())
            .get_result(&mut conn)
            .await?;
        Ok(row.id)
    }

    /// This tenant's newest 100 queued, running, done and failed jobs (row-level security
    /// shows no other tenant's).
    #[allow(
        clippy::disallowed_methods,
        reason = "tenantry's own literal statement, under row-level security"
    )]
    pub async fn queued_jobs(&mut self) -> Result<Vec<QueuedJob>, DbError> {
        let mut conn = self.pg();
        Ok(diesel::sql_query(LIST)
            .bind::<SqlUuid, _>(self.tenant_id())
            .load(&mut conn)
            .await?)
    }
}

impl Jobs {
    /// The queue of the jobs named `names`, as this job runner claims and runs them (the
    /// README's "A job queue"). A runner claims only the kinds it knows how to run.
    pub fn queue<I, S>(&self, names: I) -> Queue<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Queue {
            jobs: self,
            names: names.into_iter().map(Into::into).collect(),
            lease: Duration::from_secs(300),
            poll: Duration::from_secs(1),
        }
    }
}

/// A job runner's view of the queue: [`Queue::next`] claims, [`Claimed::run`] runs.
#[derive(Debug)]
pub struct Queue<'j> {
    jobs: &'j Jobs,
    names: Vec<String>,
    lease: Duration,
    poll: Duration,
}

impl<'j> Queue<'j> {
    /// How long a claimed job is this runner's (5 minutes by default): a job not done by then
    /// (its process died, or it runs longer) is claimed again, and a run that outlives its
    /// lease is rolled back ([`DbError::JobLeaseLost`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long [`Queue::wait`] waits when nothing was due (1 s by default).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Claims one due job of this queue's kinds in any tenant, or `None` when none is due.
    #[allow(
        clippy::disallowed_methods,
        reason = "tenantry's own literal statements; every value is bound"
    )]
    pub async fn next(&self) -> Result<Option<Claimed<'_, 'j>>, DbError> {
        outside_requests("a queued job")?;
        let lease = self.lease.as_secs_f64();
        let names = self.names.clone();
        let db = self.jobs.db();
        let citus = db.on_citus();
        let row = db
            .queue_bookkeeping(async |conn: &AsyncPgConnection| {
                let mut conn = conn;
                diesel::sql_query(EXHAUSTED).execute(&mut conn).await?;
                if !citus {
                    let rows: Vec<ClaimedRow> = diesel::sql_query(CLAIM)
                        .bind::<Double, _>(lease)
                        .bind::<Array<Text>, _>(&names)
                        .load(&mut conn)
                        .await?;
                    return Ok(rows.into_iter().next());
                }
                let tenants: Vec<IdRow> = diesel::sql_query(DUE_TENANTS)
                    .bind::<Array<Text>, _>(&names)
                    .load(&mut conn)
                    .await?;
                for tenant in tenants {
                    let rows: Vec<ClaimedRow> = diesel::sql_query(CLAIM_IN_TENANT)
                        .bind::<Double, _>(lease)
                        .bind::<Array<Text>, _>(&names)
                        .bind::<SqlUuid, _>(tenant.id)
                        .load(&mut conn)
                        .await?;
                    if let Some(row) = rows.into_iter().next() {
                        return Ok(Some(row));
                    }
                }
                Ok(None)
            })
            .await?;
        Ok(row.map(|row| Claimed {
            queue: self,
            payload: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
            tenant_id: row.tenant_id,
            id: row.id,
            name: row.name,
            attempt: row.attempts,
            max_attempts: row.max_attempts,
        }))
    }

    /// Waits the poll interval (call it when [`Queue::next`] found nothing).
    pub async fn wait(&self) {
        tokio::time::sleep(self.poll).await;
    }
}

/// A claimed job: run it with [`Claimed::run`]. Dropped without running, it is claimed again
/// when its lease runs out.
#[derive(Debug)]
pub struct Claimed<'q, 'j> {
    queue: &'q Queue<'j>,
    tenant_id: Uuid,
    id: Uuid,
    name: String,
    payload: serde_json::Value,
    attempt: i32,
    max_attempts: i32,
}

/// How a run of a queued job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The work committed and the job is `done`.
    Done,
    /// The work failed and was rolled back; the job runs again after a backoff.
    Retrying {
        /// The work's error.
        error: String,
    },
    /// The work failed on its last attempt; the job is `failed`, with this error.
    Failed {
        /// The work's error.
        error: String,
    },
}

/// A run's error: the work's own, or tenantry's.
enum RunError<E> {
    Work(E),
    Db(DbError),
}

impl<E> From<DbError> for RunError<E> {
    fn from(e: DbError) -> Self {
        RunError::Db(e)
    }
}

impl<E> From<ScopeError> for RunError<E> {
    fn from(e: ScopeError) -> Self {
        RunError::Db(e.into())
    }
}

impl Claimed<'_, '_> {
    /// The job's kind.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's tenant (the transaction's that enqueued it).
    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    /// The job.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The job's payload.
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }

    /// This run's number, from 1.
    pub fn attempt(&self) -> i32 {
        self.attempt
    }

    /// Runs `work` inside the job's tenant, in an audited job transaction that marks the job
    /// done when the work returns `Ok`. When the work returns an error, its transaction rolls
    /// back and the job is queued again after a backoff, or `failed` on its last attempt.
    /// `Err` is tenantry's own failure (the database, a lost lease).
    #[allow(
        clippy::disallowed_methods,
        reason = "tenantry's own literal statements; every value is bound"
    )]
    pub async fn run<E, F>(self, work: F) -> Result<Outcome, DbError>
    where
        E: std::fmt::Display,
        F: AsyncFnOnce(&mut TenantConn<'_, ReadWrite>, &serde_json::Value) -> Result<(), E>,
    {
        let job = self.queue.jobs.job(format!("queue:{}", self.name));
        let reason = format!(
            "queued job {} {} (attempt {} of {})",
            self.name, self.id, self.attempt, self.max_attempts
        );
        let (tenant_id, id, attempt) = (self.tenant_id, self.id, self.attempt);
        let payload = &self.payload;
        let result: Result<(), RunError<E>> = job
            .tx(tenant_id, &reason, async |conn| {
                work(conn, payload).await.map_err(RunError::Work)?;
                let mut pg = conn.pg();
                let marked = diesel::sql_query(DONE)
                    .bind::<SqlUuid, _>(tenant_id)
                    .bind::<SqlUuid, _>(id)
                    .bind::<Integer, _>(attempt)
                    .execute(&mut pg)
                    .await
                    .map_err(DbError::from)?;
                if marked == 0 {
                    return Err(RunError::Db(DbError::JobLeaseLost { id }));
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(Outcome::Done),
            Err(RunError::Work(e)) => self.failed(e.to_string()).await,
            Err(RunError::Db(e @ DbError::JobLeaseLost { .. })) => Err(e),
            Err(RunError::Db(e)) => {
                // Recorded when the database lets it; else the lease brings the job back.
                let _ = self.failed(e.to_string()).await;
                Err(e)
            }
        }
    }

    /// Records this run's failure.
    #[allow(
        clippy::disallowed_methods,
        reason = "tenantry's own literal statement; every value is bound"
    )]
    async fn failed(&self, error: String) -> Result<Outcome, DbError> {
        tracing::warn!(job = %self.name, id = %self.id, tenant_id = %self.tenant_id, attempt = self.attempt, %error, "queued job failed");
        let (tenant_id, id, attempt) = (self.tenant_id, self.id, self.attempt);
        let last = self.attempt >= self.max_attempts;
        let message = error.clone();
        let state = self
            .queue
            .jobs
            .db()
            .queue_bookkeeping(async |conn: &AsyncPgConnection| {
                let mut conn = conn;
                let sql = if last { GIVE_UP } else { RETRY };
                let rows: Vec<StateRow> = diesel::sql_query(sql)
                    .bind::<SqlUuid, _>(tenant_id)
                    .bind::<SqlUuid, _>(id)
                    .bind::<Text, _>(&message)
                    .bind::<Integer, _>(attempt)
                    .load(&mut conn)
                    .await?;
                Ok(rows.into_iter().next().map(|r| r.state))
            })
            .await?;
        match state.as_deref() {
            Some("failed") => Ok(Outcome::Failed { error }),
            Some(_) => Ok(Outcome::Retrying { error }),
            None => Err(DbError::JobLeaseLost { id }),
        }
    }
}
