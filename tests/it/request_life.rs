//! What a request's extractor grants ends with its request. Keeping the context or the proof past
//! it does not compile (`tests/ui/fail`); keeping the extractor itself takes naming the local
//! `#[requires_role]` binds it to, a deliberate act. Kept that way anywhere (a static, a `Mutex`
//! in the router's state, a spawned task, a channel), it is refused at its first use after the
//! request with `DbError::RequestEnded` and one `ERROR` line, before anything reaches the
//! database. During its request the same code works: each test checks that first.
#![allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::Router;
use common::logs::Logs;
use common::schema::*;
use common::{CountRow, TestDb};
use diesel::sql_types::Text;
use tenantry::__private::ByRole;
use tenantry::auth::Authenticator;
use tenantry::identity::{AsOwner, InTenant, Partner, Tenantry};
use tenantry::prelude::*;
use tenantry::{no_tenant_scope, requires_role, DbError};
use tokio::sync::{mpsc, Notify};

const OWNER: &str = "olga@example.com";
const PARTNER: &str = "paul@example.com";
const EMAIL_HEADER: &str = "cf-access-authenticated-user-email";

type PartnerRequest = ByRole<InTenant<Partner>>;

#[derive(Clone)]
struct App {
    tenantry: Tenantry,
    /// A `Mutex` in the state, holding a request's extractor.
    kept: Arc<Mutex<Option<PartnerRequest>>>,
    /// A channel to a background task, carrying a request's extractor.
    work: mpsc::UnboundedSender<PartnerRequest>,
    /// Tells the spawned task and the background task to go on: after the response.
    go: Arc<Notify>,
    /// What they report.
    done: mpsc::UnboundedSender<String>,
}

impl FromRef<App> for Tenantry {
    fn from_ref(app: &App) -> Tenantry {
        app.tenantry.clone()
    }
}

/// `ok:<n>` (the tenant's invoice count) or `err:<the error>`.
async fn count(db: &Db, ctx: &TenantCtx<'_>) -> String {
    let counted = db
        .tx(ctx, async |conn| {
            Ok::<_, DbError>(
                Invoice::scoped(conn)
                    .count()
                    .get_result::<i64>(conn)
                    .await?,
            )
        })
        .await;
    outcome(counted)
}

fn outcome(result: Result<i64, DbError>) -> String {
    match result {
        Ok(n) => format!("ok:{n}"),
        Err(e @ DbError::RequestEnded { .. }) => format!("ended:{e}"),
        Err(e) => format!("err:{e}"),
    }
}

static KEPT_IN_A_STATIC: OnceLock<PartnerRequest> = OnceLock::new();
static OWNER_KEPT: OnceLock<ByRole<AsOwner>> = OnceLock::new();

#[requires_role(Partner)]
async fn keep_in_a_static(State(app): State<App>) -> String {
    let now = count(
        &app.tenantry.db,
        &request_ends_with_handler_queue_later_work_as_a_job
            .get()
            .ctx(),
    )
    .await;
    let _ = KEPT_IN_A_STATIC.set(request_ends_with_handler_queue_later_work_as_a_job);
    now
}

/// A route with no role at all, acting with what an earlier request kept.
async fn use_the_static(State(app): State<App>) -> String {
    let kept = KEPT_IN_A_STATIC.get().expect("kept by an earlier request");
    count(&app.tenantry.db, &kept.get().ctx()).await
}

#[requires_role(Partner)]
async fn keep_in_the_state(State(app): State<App>) -> String {
    let now = count(
        &app.tenantry.db,
        &request_ends_with_handler_queue_later_work_as_a_job
            .get()
            .ctx(),
    )
    .await;
    *app.kept.lock().unwrap() = Some(request_ends_with_handler_queue_later_work_as_a_job);
    now
}

async fn use_the_state(State(app): State<App>) -> String {
    let kept = app
        .kept
        .lock()
        .unwrap()
        .take()
        .expect("kept by an earlier request");
    count(&app.tenantry.db, &kept.get().ctx()).await
}

#[requires_role(Partner)]
async fn keep_in_a_spawned_task(State(app): State<App>) -> String {
    let now = count(
        &app.tenantry.db,
        &request_ends_with_handler_queue_later_work_as_a_job
            .get()
            .ctx(),
    )
    .await;
    tokio::spawn(async move {
        app.go.notified().await;
        let later = count(
            &app.tenantry.db,
            &request_ends_with_handler_queue_later_work_as_a_job
                .get()
                .ctx(),
        )
        .await;
        let _ = app.done.send(later);
    });
    now
}

#[requires_role(Partner)]
async fn send_through_a_channel(State(app): State<App>) -> String {
    let now = count(
        &app.tenantry.db,
        &request_ends_with_handler_queue_later_work_as_a_job
            .get()
            .ctx(),
    )
    .await;
    let _ = app
        .work
        .send(request_ends_with_handler_queue_later_work_as_a_job);
    now
}

/// The background task at the channel's other end.
async fn worker(app: App, mut work: mpsc::UnboundedReceiver<PartnerRequest>) {
    while let Some(request) = work.recv().await {
        app.go.notified().await;
        let later = count(&app.tenantry.db, &request.get().ctx()).await;
        let _ = app.done.send(later);
    }
}

/// An Owner's route that keeps its extractor...
#[requires_role(Owner)]
async fn owner_keeps(State(app): State<App>) -> String {
    let proof = request_ends_with_handler_queue_later_work_as_a_job
        .get()
        .proof();
    let now = app
        .tenantry
        .db
        .bypass(
            no_tenant_scope!(&proof, "count while the request runs"),
            async |conn| {
                Ok::<_, DbError>(conn.get_result::<i64, _>(invoices::table.count()).await?)
            },
        )
        .await;
    drop(proof);
    let _ = OWNER_KEPT.set(request_ends_with_handler_queue_later_work_as_a_job);
    outcome(now)
}

/// ...and a route with no authentication at all that opens a bypass with it.
async fn open_bypass(State(app): State<App>) -> String {
    let kept = OWNER_KEPT.get().expect("kept by the Owner's request");
    let proof = kept.get().proof();
    let later = app
        .tenantry
        .db
        .bypass(
            no_tenant_scope!(&proof, "count after the request"),
            async |conn| {
                Ok::<_, DbError>(conn.get_result::<i64, _>(invoices::table.count()).await?)
            },
        )
        .await;
    outcome(later)
}

/// The hidden extractor taken by hand, never armed by the attribute's guard: nothing it grants
/// works, even during its own request.
async fn never_armed(extractor: PartnerRequest, State(app): State<App>) -> String {
    count(&app.tenantry.db, &extractor.get().ctx()).await
}

struct Fixture {
    t: TestDb,
    addr: SocketAddr,
    client: reqwest::Client,
    go: Arc<Notify>,
    done: mpsc::UnboundedReceiver<String>,
}

impl Fixture {
    async fn start() -> Self {
        let t = TestDb::new().await;
        let acme = t.tenant("acme").await;
        t.seed(acme, "website", 3).await;
        {
            use diesel_async::SimpleAsyncConnection;
            t.admin()
                .await
                .batch_execute(&format!(
                    "INSERT INTO tenantry.users (email, is_owner) VALUES ('{OWNER}', true), ('{PARTNER}', false);
                     INSERT INTO tenantry.memberships (user_id, tenant_id, role)
                     SELECT id, '{acme}', 'partner' FROM tenantry.users WHERE email = '{PARTNER}';"
                ))
                .await
                .unwrap();
        }
        let (work, work_rx) = mpsc::unbounded_channel();
        let (done, done_rx) = mpsc::unbounded_channel();
        let go = Arc::new(Notify::new());
        let app = App {
            tenantry: Tenantry {
                db: t.db.clone(),
                auth: Arc::new(Authenticator::TrustedHeader {
                    proxies: vec!["127.0.0.1/32".parse().unwrap()],
                }),
                csrf: Default::default(),
            },
            kept: Arc::default(),
            work,
            go: go.clone(),
            done,
        };
        tokio::spawn(worker(app.clone(), work_rx));
        let router = Router::new()
            .route("/keep/static", get(keep_in_a_static))
            .route("/use/static", get(use_the_static))
            .route("/keep/state", get(keep_in_the_state))
            .route("/use/state", get(use_the_state))
            .route("/keep/spawned", get(keep_in_a_spawned_task))
            .route("/keep/channel", get(send_through_a_channel))
            .route("/owner/keep", get(owner_keeps))
            .route("/open", get(open_bypass))
            .route("/never-armed", get(never_armed))
            .with_state(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Fixture {
            t,
            addr,
            client: reqwest::Client::new(),
            go,
            done: done_rx,
        }
    }

    async fn get(&self, path: &str, email: Option<&str>) -> (u16, String) {
        let mut request = self.client.get(format!("http://{}{path}", self.addr));
        if let Some(email) = email {
            request = request.header(EMAIL_HEADER, email);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn audit_rows(&self) -> i64 {
        let query =
            diesel::sql_query("SELECT count(*) AS n FROM tenantry.audit_log WHERE reason LIKE $1")
                .bind::<Text, _>("count %");
        diesel_async::RunQueryDsl::get_result::<CountRow>(query, &mut self.t.admin().await)
            .await
            .unwrap()
            .n
    }
}

/// Every place the issue names, in one server: each is refused once its request has ended.
#[tokio::test]
async fn an_extractor_kept_past_its_request_is_refused_at_its_first_use() {
    let logs = Logs::global();
    let mut f = Fixture::start().await;
    let mut refused_requests = Vec::new();
    let mut ended = |body: &str| {
        // "... the `InTenant<Partner>` of request <id> was used after ...": the id picks this
        // refusal's line out of the binary's log.
        if let Some(id) = body
            .split("of request ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
        {
            refused_requests.push(id.to_owned());
        }
        body.starts_with("ended:")
            && body.contains("InTenant<Partner>")
            && body.contains("continue work after the response in a system job")
    };

    // A static (a `OnceLock`): it works during the request, not after.
    assert_eq!(
        f.get("/keep/static", Some(PARTNER)).await,
        (200, "ok:3".into())
    );
    let (status, body) = f.get("/use/static", None).await;
    assert_eq!(status, 200);
    assert!(ended(&body), "{body}");

    // A `Mutex` in the router's state.
    assert_eq!(
        f.get("/keep/state", Some(PARTNER)).await,
        (200, "ok:3".into())
    );
    let (_, body) = f.get("/use/state", None).await;
    assert!(ended(&body), "{body}");

    // A spawned task, going on after the response.
    assert_eq!(
        f.get("/keep/spawned", Some(PARTNER)).await,
        (200, "ok:3".into())
    );
    f.go.notify_one();
    let body = f.done.recv().await.unwrap();
    assert!(ended(&body), "{body}");

    // A channel to a background task.
    assert_eq!(
        f.get("/keep/channel", Some(PARTNER)).await,
        (200, "ok:3".into())
    );
    f.go.notify_one();
    let body = f.done.recv().await.unwrap();
    assert!(ended(&body), "{body}");

    // Each refusal logged one ERROR line naming the grant and its request.
    assert_eq!(refused_requests.len(), 4, "{refused_requests:?}");
    let text = logs.text();
    for id in &refused_requests {
        let refusals = text
            .lines()
            .filter(|l| {
                l.contains(id.as_str())
                    && l.contains("ERROR")
                    && l.contains("a request's grant used after its request ended")
            })
            .collect::<Vec<_>>();
        assert_eq!(refusals.len(), 1, "request {id}:\n{text}");
        assert!(refusals[0].contains("InTenant<Partner>"), "{text}");
    }
}

/// The Owner's extractor kept by the Owner's route: a route with no authentication cannot open a
/// bypass with it, and no audit row is written for the attempt.
#[tokio::test]
async fn an_owner_extractor_kept_past_its_request_opens_no_bypass() {
    let f = Fixture::start().await;
    assert_eq!(
        f.get("/owner/keep", Some(OWNER)).await,
        (200, "ok:3".into())
    );
    assert_eq!(f.audit_rows().await, 1, "the Owner's own bypass is audited");
    let (status, body) = f.get("/open", None).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("ended:") && body.contains("AsOwner"),
        "{body}"
    );
    assert_eq!(
        f.audit_rows().await,
        1,
        "nothing ran for the refused bypass"
    );
}

/// tenantry's hidden extractor taken by hand, without the attribute: never armed, it grants
/// nothing even during its own request.
#[tokio::test]
async fn the_hidden_extractor_taken_without_the_attribute_grants_nothing() {
    let f = Fixture::start().await;
    let (status, body) = f.get("/never-armed", Some(PARTNER)).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("ended:"), "{body}");
}
