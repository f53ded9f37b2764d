//! `Jobs` exists once per process and database, where `main` put it. Shared with request
//! handlers in ways the compiler cannot refuse (a `Mutex<Jobs>` in the router's state, a
//! `static`), or made by a handler that holds the settings, it is refused at run time: no job
//! transaction or job bypass runs, and no `Jobs` is made, in a task that serves a request
//! (`DbError::JobInRequest`); a second `Db::connect_with_jobs` for one database is
//! `DbError::JobsAlreadyMade`, whatever URL leads there. Each case checks first that the same
//! call works outside a request.
#![allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::Router;
use common::{CountRow, TestDb};
use tenantry::auth::Authenticator;
use tenantry::identity::Tenantry;
use tenantry::pooler::Pooler;
use tenantry::testing::{jobs_for_test, PgBouncer};
use tenantry::{
    no_tenant_scope, requires_role, Db, DbConfig, DbError, Jobs, ScopeError, SystemJob,
};
use uuid::Uuid;

const PARTNER: &str = "paul@example.com";
const EMAIL_HEADER: &str = "cf-access-authenticated-user-email";

/// `Jobs` in a static, for any handler to reach.
static JOBS: tokio::sync::Mutex<Option<Jobs>> = tokio::sync::Mutex::const_new(None);

#[derive(Clone)]
struct App {
    tenantry: Tenantry,
    /// `Jobs` behind a lock in the router's state.
    jobs: Arc<tokio::sync::Mutex<Jobs>>,
    /// The settings a handler could make its own `Jobs` from.
    config: DbConfig,
    tenant: Uuid,
}

impl FromRef<App> for Tenantry {
    fn from_ref(app: &App) -> Tenantry {
        app.tenantry.clone()
    }
}

/// A job's error: the database's, or a blank reason.
#[derive(Debug)]
enum JobError {
    Db(DbError),
    Scope(ScopeError),
}
impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        JobError::Db(e)
    }
}
impl From<ScopeError> for JobError {
    fn from(e: ScopeError) -> Self {
        JobError::Scope(e)
    }
}

fn outcome<T>(result: Result<T, impl Into<JobError>>) -> String {
    match result.map_err(Into::into) {
        Ok(_) => "ok".into(),
        Err(JobError::Db(e @ DbError::JobInRequest { .. })) => format!("in-request:{e}"),
        Err(JobError::Db(e)) => format!("err:{e}"),
        Err(JobError::Scope(e)) => format!("err:{e}"),
    }
}

/// A job transaction and a job's bypass: `ok` or why not.
async fn use_jobs(db: &Db, job: &SystemJob<'_>, tenant: Uuid) -> (String, String) {
    let tx = job
        .tx(tenant, "job run by a handler", async |_conn| {
            Ok::<_, JobError>(())
        })
        .await;
    let bypass = db
        .bypass(
            no_tenant_scope!(job, "job bypass run by a handler"),
            async |_conn| Ok::<_, DbError>(()),
        )
        .await;
    (outcome(tx), outcome(bypass))
}

/// Any route, no role: the lock in the state.
async fn state_jobs(State(app): State<App>) -> String {
    let jobs = app.jobs.lock().await;
    let job = jobs.job("from-a-handler");
    let (tx, bypass) = use_jobs(&app.tenantry.db, &job, app.tenant).await;
    format!("{tx}|{bypass}")
}

/// Any route, no role: the static.
async fn static_jobs(State(app): State<App>) -> String {
    let jobs = JOBS.lock().await;
    let job = jobs
        .as_ref()
        .expect("put there by the test")
        .job("from-a-handler");
    let (tx, bypass) = use_jobs(&app.tenantry.db, &job, app.tenant).await;
    format!("{tx}|{bypass}")
}

/// A Partner's handler that holds the settings and makes its own `Jobs`.
#[requires_role(Partner)]
async fn mint(State(app): State<App>) -> String {
    outcome(Db::connect_with_jobs(app.config.clone()).await)
}

/// The same, with the lock in the state, in a role-checked handler.
#[requires_role(Partner)]
async fn partner_state_jobs(State(app): State<App>) -> String {
    state_jobs(State(app)).await
}

struct Fixture {
    t: TestDb,
    app: App,
    client: reqwest::Client,
}

impl Fixture {
    async fn start() -> Self {
        let t = TestDb::new().await;
        let tenant = t.tenant("acme").await;
        {
            use diesel_async::SimpleAsyncConnection;
            t.admin()
                .await
                .batch_execute(&format!(
                    "INSERT INTO tenantry.users (email, is_owner) VALUES ('{PARTNER}', false);
                     INSERT INTO tenantry.memberships (user_id, tenant_id, role)
                     SELECT id, '{tenant}', 'partner' FROM tenantry.users WHERE email = '{PARTNER}';"
                ))
                .await
                .unwrap();
        }
        let app = App {
            tenantry: Tenantry {
                db: t.db.clone(),
                auth: Arc::new(Authenticator::TrustedHeader {
                    proxies: vec!["127.0.0.1/32".parse().unwrap()],
                }),
                csrf: Default::default(),
            },
            jobs: Arc::new(tokio::sync::Mutex::new(jobs_for_test(&t.db))),
            config: DbConfig::new(t.app_url(), Some(TestDb::bypass_url_of(&t.name))),
            tenant,
        };
        Fixture {
            t,
            app,
            client: reqwest::Client::new(),
        }
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/state-jobs", get(state_jobs))
            .route("/static-jobs", get(static_jobs))
            .route("/mint", get(mint))
            .route("/partner-state-jobs", get(partner_state_jobs))
            .with_state(self.app.clone())
    }

    /// Serves with tenantry's server (it marks every connection's task).
    async fn serve_with_tenantry(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router();
        tokio::spawn(tenantry::serve::serve(
            listener,
            router,
            tenantry::serve::ServeConfig::default(),
            std::future::pending(),
        ));
        addr
    }

    /// Serves with axum's: only role-checked handlers mark their task.
    async fn serve_with_axum(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        addr
    }

    async fn get(&self, addr: SocketAddr, path: &str, email: Option<&str>) -> String {
        let mut request = self.client.get(format!("http://{addr}{path}"));
        if let Some(email) = email {
            request = request.header(EMAIL_HEADER, email);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    }

    async fn job_audit_rows(&self) -> i64 {
        let query = diesel::sql_query(
            "SELECT count(*) AS n FROM tenantry.audit_log WHERE actor_email = 'job:from-a-handler'",
        );
        diesel_async::RunQueryDsl::get_result::<CountRow>(query, &mut self.t.admin().await)
            .await
            .unwrap()
            .n
    }
}

fn refused_twice(body: &str) -> bool {
    let parts: Vec<&str> = body.split('|').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| p.starts_with("in-request:") && p.contains("job runner"))
}

#[tokio::test]
async fn jobs_behind_a_lock_in_the_state_are_refused_in_every_handler() {
    let f = Fixture::start().await;
    // Outside a request, the same `Jobs` works, and its rows are audited.
    {
        let jobs = f.app.jobs.lock().await;
        let (tx, bypass) = use_jobs(&f.t.db, &jobs.job("from-a-handler"), f.app.tenant).await;
        assert_eq!((tx.as_str(), bypass.as_str()), ("ok", "ok"));
    }
    assert_eq!(f.job_audit_rows().await, 2);

    // Any route served by tenantry's server, role or none.
    let served = f.serve_with_tenantry().await;
    let body = f.get(served, "/state-jobs", None).await;
    assert!(refused_twice(&body), "{body}");
    // A role-checked handler under axum's own server.
    let axum = f.serve_with_axum().await;
    let body = f.get(axum, "/partner-state-jobs", Some(PARTNER)).await;
    assert!(refused_twice(&body), "{body}");

    assert_eq!(
        f.job_audit_rows().await,
        2,
        "nothing ran for the refused jobs"
    );
}

#[tokio::test]
async fn jobs_in_a_static_are_refused_in_handlers() {
    let f = Fixture::start().await;
    *JOBS.lock().await = Some(jobs_for_test(&f.t.db));
    let served = f.serve_with_tenantry().await;
    let body = f.get(served, "/static-jobs", None).await;
    assert!(refused_twice(&body), "{body}");
    assert_eq!(f.job_audit_rows().await, 0);
    // The test's own task is no request's: the static's `Jobs` works here.
    let jobs = JOBS.lock().await.take().unwrap();
    let (tx, bypass) = use_jobs(&f.t.db, &jobs.job("from-a-handler"), f.app.tenant).await;
    assert_eq!((tx.as_str(), bypass.as_str()), ("ok", "ok"));
}

#[tokio::test]
async fn a_handler_cannot_make_its_own_jobs() {
    let f = Fixture::start().await;
    let addr = f.serve_with_axum().await;
    let body = f.get(addr, "/mint", Some(PARTNER)).await;
    assert!(
        body.starts_with("in-request:") && body.contains("`Db::connect_with_jobs`"),
        "{body}"
    );
}

#[tokio::test]
async fn a_second_jobs_for_one_database_is_refused_whatever_the_url() {
    let f = Fixture::start().await;
    // `TestDb::new` made this database's `Jobs` already: the settings again are refused.
    let again = Db::connect_with_jobs(f.app.config.clone()).await;
    match again {
        Err(DbError::JobsAlreadyMade { database }) => assert!(database.contains(&f.t.name)),
        other => panic!("expected JobsAlreadyMade, got {:?}", other.map(|_| ())),
    }
    // Another way to the same database (through PgBouncer) is the same database.
    let bouncer = PgBouncer::shared().await;
    let mut pooled = DbConfig::new(
        bouncer.url(&f.t.name, "tenantry_app"),
        Some(bouncer.url(&f.t.name, "tenantry_bypass")),
    );
    pooled.pooler = Pooler::Transaction;
    let message = match Db::connect_with_jobs(pooled).await {
        Err(e @ DbError::JobsAlreadyMade { .. }) => e.to_string(),
        other => panic!("expected JobsAlreadyMade, got {:?}", other.map(|_| ())),
    };
    assert!(message.contains("make it once, in `main`"), "{message}");
    // Another database is another `Jobs` (`TestDb::new` makes one, and would panic if refused).
    let other = TestDb::new().await;
    assert_ne!(other.name, f.t.name);
}
