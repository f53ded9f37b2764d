//! On a running Citus cluster (`../shared/citus/`: Citus 13.2.2, a coordinator and two workers):
//! `tenantry citus-plan`'s script applies as printed on a database migrated the way the README
//! says, every route of the example works through the coordinator for every role with tenants on
//! both workers, single-tenant statements are router queries, and the tenant seal holds on the
//! workers against SQL of the app role (a forged setting, a forged seal, a seal copied from
//! another transaction, commands run on other nodes, a distributed transaction id taken by hand).
//!
//! Ignored by a plain `cargo test`: they need the cluster, which `.ci/run`'s Citus step builds and
//! starts before it runs them (`cargo test -p tenantry-example --test it -- --include-ignored
//! citus_cluster::` by hand, after `bash ../shared/citus/cluster.sh start citus_ci`). The coordinator
//! is `TENANTRY_CITUS_URL` (a superuser URL of a database set up by `cluster.sh start`, default
//! `postgres://postgres@127.0.0.1:5440/citus_ci`); each test creates its own database on every
//! node, as `cluster.sh start DB` does, since Citus does not propagate `CREATE DATABASE`.

use std::collections::HashMap;

use diesel::sql_types::{BigInt, Integer, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use reqwest::Method;
use serde_json::{json, Value};
use tenantry::settings::Settings;
use uuid::Uuid;

const CITUS_URL: &str = "TENANTRY_CITUS_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5440/citus_ci";
const EMAIL_HEADER: &str = "cf-access-authenticated-user-email";
const PARTNER: &str = "partner@example.com";
const VIEWER: &str = "viewer@example.com";
const OWNER: &str = "owner@example.com";

#[derive(QueryableByName)]
struct Node {
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = Integer)]
    port: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

#[derive(QueryableByName)]
struct Port {
    #[diesel(sql_type = Integer)]
    port: i32,
}

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.unwrap_or_else(|e| {
        panic!(
            "the Citus cluster is not reachable at {url} ({e}): build and start it with \
             `bash ../shared/citus/build.sh && bash ../shared/citus/cluster.sh start citus_ci`, \
             or set {CITUS_URL} to the coordinator's superuser URL"
        )
    })
}

fn with_db(url: &url::Url, host: &str, port: u16, db: &str) -> String {
    let mut u = url.clone();
    u.set_host(Some(host)).expect("host");
    u.set_port(Some(port)).expect("port");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// One setup at a time on the cluster, this file's and the test kit's (the isolation suites'
/// databases, made in this same binary): roles are shared by every database of the cluster
/// (`citus_add_node`, the migrations' GRANTs, the plan's ALTER ROLE), and two at once fail with
/// "tuple concurrently updated". A lock of this process alone did not hold the kit off.
async fn setup_lock(base: &url::Url) -> tenantry::testing::CitusSetupLock {
    tenantry::testing::lock_citus_setup(base.as_str()).await
}

/// A database of its own on every node of the cluster, with citus and the nodes registered.
struct ClusterDb {
    url: String,
    name: String,
    base: url::Url,
}

impl ClusterDb {
    #[allow(
        clippy::disallowed_methods,
        reason = "cluster setup as the superuser, literal SQL"
    )]
    async fn create(tag: &str) -> Self {
        let raw = std::env::var(CITUS_URL).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let base = url::Url::parse(&raw).unwrap_or_else(|e| panic!("{CITUS_URL}: {e}"));
        let mut coordinator = connect(base.as_str()).await;
        let workers: Vec<Node> = diesel::sql_query(
            "SELECT nodename AS host, nodeport AS port FROM pg_dist_node \
             WHERE groupid <> 0 AND isactive ORDER BY nodeport",
        )
        .load(&mut coordinator)
        .await
        .unwrap_or_else(|e| {
            panic!("{CITUS_URL} is not a Citus coordinator set up by cluster.sh ({e})")
        });
        assert!(
            workers.len() >= 2,
            "the cluster at {base} has {} active workers; tests need two \
             (bash ../shared/citus/cluster.sh start citus_ci)",
            workers.len()
        );
        let host = base.host_str().expect("host").to_owned();
        let port = base.port().unwrap_or(5432);
        let name = format!("tenantry_citus_{tag}");
        let mut nodes = vec![(host.clone(), port)];
        nodes.extend(workers.iter().map(|w| (w.host.clone(), w.port as u16)));
        let _one = setup_lock(&base).await;
        // An earlier run's copies, closed to new connections on every node before any is
        // dropped: each copy's Citus maintenance daemon holds connections to the other nodes'
        // copies, exits when one of them goes and starts again about five seconds later, and a
        // `DROP DATABASE .. WITH (FORCE)` that meets it coming back fails ("being accessed by
        // other users"). Closed everywhere first, none comes back.
        let mut admins = Vec::with_capacity(nodes.len());
        for (h, p) in &nodes {
            let mut c = connect(&with_db(&base, h, *p, "postgres")).await;
            c.batch_execute(&format!(
                "DO $$ BEGIN IF EXISTS (SELECT FROM pg_database WHERE datname = '{name}') THEN \
                 ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false; END IF; END $$"
            ))
            .await
            .expect("closing an earlier run's database");
            admins.push(c);
        }
        for ((h, p), c) in nodes.iter().zip(&mut admins) {
            for sql in [
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                format!("CREATE DATABASE {name}"),
            ] {
                c.batch_execute(&sql).await.expect("database");
            }
            let mut d = connect(&with_db(&base, h, *p, &name)).await;
            d.batch_execute("CREATE EXTENSION citus")
                .await
                .expect("citus");
        }
        let url = with_db(&base, &host, port, &name);
        let mut c = connect(&url).await;
        c.batch_execute(&format!(
            "SELECT citus_set_coordinator_host('{host}', {port})"
        ))
        .await
        .expect("coordinator");
        for w in &workers {
            c.batch_execute(&format!("SELECT citus_add_node('{}', {})", w.host, w.port))
                .await
                .expect("worker");
        }
        ClusterDb { url, name, base }
    }

    async fn admin(&self) -> AsyncPgConnection {
        connect(&self.url).await
    }

    fn as_role(&self, role: &str) -> String {
        let mut u = url::Url::parse(&self.url).expect("url");
        u.set_username(role).expect("user");
        u.set_password(None).expect("password");
        u.to_string()
    }

    fn settings(&self) -> Settings {
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("DATABASE_URL".into(), self.url.clone());
        env.insert("TENANTRY_BIND".into(), "127.0.0.1:0".into());
        env.insert("TENANTRY_AUTH_MODE".into(), "trusted_header".into());
        env.insert("TENANTRY_TRUSTED_PROXIES".into(), "127.0.0.1/32".into());
        Settings::from_map(&env).expect("settings")
    }

    /// Migrates as the README says (tenantry's and the example's migrations), applies
    /// `tenantry citus-plan`'s script as printed, one statement at a time as psql does, and seeds
    /// one tenant on each worker with a project and three invoices, and the example's users.
    #[allow(clippy::disallowed_methods, reason = "test setup as the superuser")]
    async fn migrated_and_planned(&self) -> HashMap<&'static str, Uuid> {
        let _one = setup_lock(&self.base).await;
        self.migrate().await;
        let mut admin = self.admin().await;
        if let Err(e) = self.apply_plan(&mut admin).await {
            panic!("{e}");
        }
        let tenants = self.seed_on_each_worker(&mut admin).await;
        assert_eq!(
            tenantry::citus::check_app_role(&mut admin, "tenantry_app")
                .await
                .expect("app role"),
            None
        );
        tenants
    }

    async fn migrate(&self) {
        tenantry_example::setup::prepare(&self.settings())
            .await
            .expect("migrations");
    }

    /// `tenantry citus-plan`'s script, one statement at a time as psql sends it; the first
    /// error with its statement (the transaction rolled back).
    async fn apply_plan(&self, admin: &mut AsyncPgConnection) -> Result<(), String> {
        let report = tenantry::citus::check(admin).await.expect("check");
        assert!(report.is_ok(), "{:#?}", report.findings);
        let script = report.script("tenantry_app");
        for statement in script.lines().filter(|l| !l.starts_with("--")) {
            if let Err(e) = admin.batch_execute(statement).await {
                let _ = admin.batch_execute("ROLLBACK").await;
                return Err(format!("{statement}: {e}\n\nthe script:\n{script}"));
            }
        }
        Ok(())
    }

    #[allow(clippy::disallowed_methods, reason = "test setup as the superuser")]
    async fn seed_on_each_worker(
        &self,
        admin: &mut AsyncPgConnection,
    ) -> HashMap<&'static str, Uuid> {
        let mut tenants = HashMap::new();
        let mut ports = Vec::new();
        for slug in ["acme", "globex"] {
            // A tenant id whose shard is on a worker no earlier tenant is on.
            let id = loop {
                let id = Uuid::new_v4();
                let p: Port = diesel::sql_query(
                    "SELECT nodeport::int AS port FROM pg_dist_shard_placement \
                     WHERE shardid = get_shard_id_for_distribution_column('public.invoices', $1)",
                )
                .bind::<SqlUuid, _>(id)
                .get_result(admin)
                .await
                .expect("placement");
                if !ports.contains(&p.port) {
                    ports.push(p.port);
                    break id;
                }
            };
            admin
                .batch_execute(&format!(
                    "INSERT INTO tenantry.tenants (id, slug, name) VALUES ('{id}', '{slug}', '{slug} inc');
                     INSERT INTO projects (tenant_id, name) VALUES ('{id}', '{slug} project');
                     INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
                     SELECT '{id}', p.id, 'INV-' || i, i * 100, 'EUR', 'draft'
                     FROM projects p, generate_series(1, 3) i WHERE p.tenant_id = '{id}';"
                ))
                .await
                .expect("tenant");
            tenants.insert(slug, id);
        }
        admin
            .batch_execute(&format!(
                "INSERT INTO tenantry.users (email, is_owner) VALUES ('{OWNER}', true), ('{PARTNER}', false), ('{VIEWER}', false);
                 INSERT INTO tenantry.memberships (user_id, tenant_id, role)
                   SELECT u.id, t.id, 'partner' FROM tenantry.users u, tenantry.tenants t WHERE u.email = '{PARTNER}';
                 INSERT INTO tenantry.memberships (user_id, tenant_id, role)
                   SELECT u.id, t.id, 'client_viewer' FROM tenantry.users u, tenantry.tenants t
                   WHERE u.email = '{VIEWER}' AND t.slug = 'acme';"
            ))
            .await
            .expect("users");
        tenants
    }

    /// Rows of `sql` (a count) as the superuser.
    #[allow(clippy::disallowed_methods, reason = "a probe as the superuser")]
    async fn count(&self, sql: &str) -> i64 {
        let c: Count = diesel::sql_query(sql)
            .get_result(&mut self.admin().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.n
    }
}

impl Drop for ClusterDb {
    fn drop(&mut self) {
        // Left for the next run's DROP .. WITH (FORCE): dropping needs every node, and the
        // server's pools are still open here.
        let _ = (&self.base, &self.name);
    }
}

#[tokio::test]
#[ignore = "needs a running Citus cluster: .ci/run's Citus step runs it (docs/scaling.md)"]
async fn the_plan_applies_as_printed_and_every_route_works_for_every_role() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let db = ClusterDb::create("routes").await;
    let tenants = db.migrated_and_planned().await;

    // Placed as planned: the tenant tables distributed and colocated, the directory and the
    // keys replicated, data on both workers; running the plan again places nothing.
    assert_eq!(
        db.count(
            "SELECT count(DISTINCT colocationid) AS n FROM pg_dist_partition \
             WHERE logicalrelid IN ('projects'::regclass, 'invoices'::regclass) AND partmethod = 'h'"
        )
        .await,
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM pg_dist_partition WHERE partmethod = 'n' AND repmodel = 't' \
             AND logicalrelid IN ('tenantry.tenants'::regclass, 'tenantry.users'::regclass, 'tenantry.memberships'::regclass, \
                                  'tenantry.tenantry_tenant_keys'::regclass, 'currencies'::regclass)"
        )
        .await,
        5
    );
    let mut admin = db.admin().await;
    let again = tenantry::citus::check(&mut admin).await.expect("check");
    assert!(
        !again.script("tenantry_app").contains("SELECT create_"),
        "{}",
        again.script("tenantry_app")
    );

    let server = tenantry_example::Server::build(&db.settings())
        .await
        .expect("the example starts on Citus");
    let base = format!("http://{}", server.addr);
    let handle = server.db().clone();
    tokio::spawn(server.serve());
    let client = reqwest::Client::new();
    let call =
        |method: Method, path: &str, email: &str, tenant: Option<&str>, body: Option<Value>| {
            let mut r = client
                .request(method, format!("{base}{path}"))
                .header(EMAIL_HEADER, email);
            if let Some(t) = tenant {
                r = r.header("x-tenant", t);
            }
            if let Some(b) = body {
                r = r.json(&b);
            }
            async move {
                let r = r.send().await.expect("request");
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
        };

    // Each tenant sees its own rows only, through the coordinator, from whichever worker.
    for slug in ["acme", "globex"] {
        let id = tenants[slug].to_string();
        for path in ["/api/projects", "/api/invoices"] {
            let (status, body) = call(Method::GET, path, PARTNER, Some(slug), None).await;
            assert_eq!(status, 200, "{path} in {slug}: {body}");
            let rows = body.as_array().expect("a list");
            assert!(!rows.is_empty(), "{path} in {slug}");
            assert!(rows.iter().all(|r| r["tenant_id"] == id.as_str()), "{body}");
        }
    }
    let (status, me) = call(Method::GET, "/api/me", PARTNER, Some("acme"), None).await;
    assert_eq!(status, 200, "{me}");

    // The partner writes: create, read, change, delete an invoice.
    let (_, projects) = call(Method::GET, "/api/projects", PARTNER, Some("globex"), None).await;
    let project = projects[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a project: {projects}"))
        .to_owned();
    let (status, created) = call(
        Method::POST,
        "/api/invoices",
        PARTNER,
        Some("globex"),
        Some(json!({"project_id": project, "number": "CITUS-1", "amount_cents": 4200, "currency": "EUR"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/api/invoices/{}", created["id"].as_str().expect("id"));
    let (status, shown) = call(Method::GET, &path, PARTNER, Some("globex"), None).await;
    assert_eq!(status, 200, "{shown}");
    let (status, other) = call(Method::GET, &path, PARTNER, Some("acme"), None).await;
    assert_eq!(status, 404, "another tenant's invoice: {other}");
    let (status, changed) = call(
        Method::PATCH,
        &path,
        PARTNER,
        Some("globex"),
        Some(json!({"status": "sent"})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let (status, _) = call(Method::DELETE, &path, PARTNER, Some("globex"), None).await;
    assert_eq!(status, 204);
    let (status, project) = call(
        Method::POST,
        "/api/projects",
        PARTNER,
        Some("acme"),
        Some(json!({"name": "on citus"})),
    )
    .await;
    assert_eq!(status, 201, "{project}");

    // The viewer reads its tenant only and cannot write.
    let (status, body) = call(Method::GET, "/api/invoices", VIEWER, Some("acme"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(Method::GET, "/api/invoices", VIEWER, Some("globex"), None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        Method::POST,
        "/api/projects",
        VIEWER,
        Some("acme"),
        Some(json!({"name": "no"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // The Owner's routes, the cross-tenant summary included.
    let (status, summary) = call(Method::GET, "/api/admin/tenants", OWNER, None, None).await;
    assert_eq!(status, 200, "{summary}");
    let summary = summary.as_array().expect("a list");
    assert_eq!(summary.len(), 2, "{summary:?}");
    for row in summary {
        assert_eq!(row["invoice_count"], 3, "{row}");
        assert_eq!(row["totals"], json!({"EUR": 600}), "{row}");
    }
    for path in ["/api/admin/audit", "/api/admin/audit/head"] {
        let (status, body) = call(Method::GET, path, OWNER, None, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, page) = call(Method::GET, "/admin", OWNER, None, None).await;
    assert_eq!(status, 200, "{page}");
    let (status, body) = call(Method::GET, "/api/admin/tenants", PARTNER, None, None).await;
    assert_eq!(status, 403, "{body}");

    // A revoked membership reaches the app within a second: the directory's tables are
    // reference tables, changed in Citus's two-phase commit, and the coordinator's placement
    // notifies the listener.
    let (status, _) = call(Method::GET, "/api/invoices", VIEWER, Some("acme"), None).await;
    assert_eq!(status, 200, "the viewer's principal is cached");
    assert!(handle.principal_cache_status().listening);
    db.admin()
        .await
        .batch_execute(&format!(
            "DELETE FROM tenantry.memberships WHERE user_id = (SELECT id FROM tenantry.users WHERE email = '{VIEWER}')"
        ))
        .await
        .expect("revoke");
    let revoked = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        loop {
            let (status, _) = call(Method::GET, "/api/invoices", VIEWER, Some("acme"), None).await;
            if status == 403 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        revoked.is_ok(),
        "the revocation did not reach the app within a second"
    );
}

/// One statement's rows as text, on `conn`.
#[allow(
    clippy::disallowed_methods,
    reason = "the attacks are raw SQL on purpose"
)]
async fn lines(conn: &mut AsyncPgConnection, sql: &str) -> Result<Vec<String>, String> {
    diesel::sql_query(sql)
        .load::<Line>(conn)
        .await
        .map(|rows| rows.into_iter().map(|r| r.line).collect())
        .map_err(|e| e.to_string())
}

#[allow(clippy::disallowed_methods, reason = "an EXPLAIN, literal SQL")]
async fn explain(conn: &mut AsyncPgConnection, sql: &str) -> String {
    let rows: Vec<PlanLine> = diesel::sql_query(sql).load(conn).await.expect("explain");
    rows.into_iter()
        .map(|r| r.line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[allow(
    clippy::disallowed_methods,
    reason = "the attacks are raw SQL on purpose"
)]
async fn visible(conn: &mut AsyncPgConnection, tenant: Uuid) -> i64 {
    let c: Count = diesel::sql_query("SELECT count(*) AS n FROM invoices WHERE tenant_id = $1")
        .bind::<SqlUuid, _>(tenant)
        .get_result(conn)
        .await
        .expect("count");
    c.n
}

#[tokio::test]
#[ignore = "needs a running Citus cluster: .ci/run's Citus step runs it (docs/scaling.md)"]
async fn the_seal_holds_on_the_workers_against_sql_of_the_app_role() {
    let db = ClusterDb::create("seal").await;
    let tenants = db.migrated_and_planned().await;
    let (acme, globex) = (tenants["acme"], tenants["globex"]);
    let server = tenantry_example::Server::build(&db.settings())
        .await
        .expect("the example starts on Citus");
    let handle = server.db().clone();
    let app_url = db.as_role("tenantry_app");

    // Entered the way tenantry enters: its own tenant's rows, on its worker; none of the other's.
    let mut a = connect(&app_url).await;
    tenantry::testing::begin_tenant(&handle, &mut a, acme)
        .await
        .expect("enter acme");
    assert_eq!(visible(&mut a, acme).await, 3);
    assert_eq!(visible(&mut a, globex).await, 0);
    // A single-tenant statement is a router query: one shard.
    let plan = explain(
        &mut a,
        &format!("EXPLAIN SELECT * FROM invoices WHERE tenant_id = '{acme}'"),
    )
    .await;
    assert!(plan.contains("Task Count: 1"), "{plan}");
    let seal = lines(&mut a, "SELECT current_setting('tenantry.tenant') AS line")
        .await
        .expect("the seal")
        .remove(0);
    // Another tenant under this transaction's MAC, written the way the seal travels (SET LOCAL,
    // which Citus sends to the workers) and the way it does not (set_config): no rows of it.
    let forged = format!("{globex}:{}", &seal[37..]);
    a.batch_execute(&format!("SET LOCAL tenantry.tenant = '{forged}'"))
        .await
        .expect("set");
    assert_eq!(
        visible(&mut a, globex).await,
        0,
        "a forged seal (SET LOCAL)"
    );
    lines(
        &mut a,
        &format!("SELECT set_config('tenantry.tenant', '{forged}', true) AS line"),
    )
    .await
    .expect("set_config");
    assert_eq!(
        visible(&mut a, globex).await,
        0,
        "a forged seal (set_config)"
    );
    a.batch_execute("ROLLBACK").await.expect("rollback");

    // The seal copied into another transaction (it is visible in the workers' activity, in the
    // propagated SET LOCAL): it verifies nowhere, entered in another tenant or not entered at all.
    let mut b = connect(&app_url).await;
    b.batch_execute(&format!("BEGIN; SET LOCAL tenantry.tenant = '{seal}'"))
        .await
        .expect("set");
    assert_eq!(visible(&mut b, acme).await, 0, "a copied seal, not entered");
    b.batch_execute("ROLLBACK").await.expect("rollback");
    tenantry::testing::begin_tenant(&handle, &mut b, globex)
        .await
        .expect("enter globex");
    b.batch_execute(&format!("SET LOCAL tenantry.tenant = '{seal}'"))
        .await
        .expect("set");
    assert_eq!(
        visible(&mut b, acme).await,
        0,
        "a copied seal in another tenant's transaction"
    );
    b.batch_execute("ROLLBACK").await.expect("rollback");

    // A plain setting of a tenant id, the pre-seal way: nothing.
    b.batch_execute(&format!(
        "BEGIN; SET LOCAL tenantry.tenant = '{acme}'; SET LOCAL app.tenant_id = '{acme}'"
    ))
    .await
    .expect("set");
    assert_eq!(visible(&mut b, acme).await, 0, "a bare tenant id");
    b.batch_execute("ROLLBACK").await.expect("rollback");

    // No session of the app role's own on another node: the functions that run commands there
    // are revoked on every node.
    for sql in [
        "SELECT run_command_on_workers('SELECT 1')::text AS line",
        "SELECT run_command_on_all_nodes('SELECT 1')::text AS line",
        "SELECT run_command_on_coordinator('SELECT 1')::text AS line",
        "SELECT master_run_on_worker(ARRAY['127.0.0.1'], ARRAY[5441], ARRAY['SELECT 1'], false)::text AS line",
    ] {
        let refused = lines(&mut b, sql).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("permission denied")),
            "{sql}: {refused:?}"
        );
    }
    // From inside a query on a shard (a function call Citus pushes down to the worker), the
    // worker's revocation holds too, and the worker's backend already has the transaction's
    // distributed id, so another cannot be assigned there.
    tenantry::testing::begin_tenant(&handle, &mut b, acme)
        .await
        .expect("enter acme");
    let pushed = lines(
        &mut b,
        &format!(
            "SELECT count(*)::text AS line FROM invoices WHERE tenant_id = '{acme}' \
             AND run_command_on_workers('SELECT 1') IS NOT NULL"
        ),
    )
    .await;
    assert!(pushed.is_err(), "{pushed:?}");
    b.batch_execute("ROLLBACK").await.expect("rollback");
    tenantry::testing::begin_tenant(&handle, &mut b, acme)
        .await
        .expect("enter acme");
    let assigned = lines(
        &mut b,
        &format!(
            "SELECT count(*)::text AS line FROM invoices WHERE tenant_id = '{acme}' \
             AND assign_distributed_transaction_id(0, 1, now()) IS NULL"
        ),
    )
    .await;
    assert!(
        assigned
            .as_ref()
            .is_err_and(|e| e.contains("already been assigned")),
        "{assigned:?}"
    );
    b.batch_execute("ROLLBACK").await.expect("rollback");

    // On the coordinator, the transaction tenantry entered has its id from the entry: taking
    // another one (a victim's) fails.
    tenantry::testing::begin_tenant(&handle, &mut b, globex)
        .await
        .expect("enter globex");
    let taken = lines(
        &mut b,
        "SELECT assign_distributed_transaction_id(0, 1, now())::text AS line",
    )
    .await;
    assert!(
        taken
            .as_ref()
            .is_err_and(|e| e.contains("already been assigned")),
        "{taken:?}"
    );
    b.batch_execute("ROLLBACK").await.expect("rollback");

    // INSERT .. SELECT into a tenant table is what Citus cannot run under row-level security,
    // even inside one tenant: it collects the rows on the coordinator and copies them into the
    // shards with COPY, which row-level security refuses (docs/scaling.md). What to write
    // instead, a multi-row INSERT .. VALUES, works.
    tenantry::testing::begin_tenant(&handle, &mut b, acme)
        .await
        .expect("enter acme");
    let copied = b
        .batch_execute(&format!(
            "INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
             SELECT tenant_id, project_id, number || '-copy', amount_cents, currency, status
             FROM invoices WHERE tenant_id = '{acme}'"
        ))
        .await;
    assert!(
        copied.as_ref().is_err_and(|e| e
            .to_string()
            .contains("COPY FROM not supported with row-level security")),
        "{copied:?}"
    );
    b.batch_execute("ROLLBACK").await.expect("rollback");
    tenantry::testing::begin_tenant(&handle, &mut b, acme)
        .await
        .expect("enter acme");
    let project = lines(
        &mut b,
        &format!(
            "SELECT project_id::text AS line FROM invoices WHERE tenant_id = '{acme}' LIMIT 1"
        ),
    )
    .await
    .expect("project")
    .remove(0);
    b.batch_execute(&format!(
        "INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
         VALUES ('{acme}', '{project}', 'V-1', 1, 'EUR', 'draft'),
                ('{acme}', '{project}', 'V-2', 2, 'EUR', 'draft')"
    ))
    .await
    .expect("INSERT .. VALUES within the tenant");
    assert_eq!(visible(&mut b, acme).await, 5);
    let refused = b
        .batch_execute(&format!(
            "INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
             VALUES ('{globex}', '{project}', 'V-3', 3, 'EUR', 'draft')"
        ))
        .await;
    assert!(refused.is_err(), "a row of another tenant: {refused:?}");
    b.batch_execute("ROLLBACK").await.expect("rollback");

    // The copy as the bypass role, which row-level security does not apply to (what an audited
    // bypass runs on): Citus runs it.
    let mut bypass = connect(&db.as_role("tenantry_bypass")).await;
    bypass.batch_execute("BEGIN").await.expect("begin");
    bypass
        .batch_execute(&format!(
            "INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
             SELECT tenant_id, project_id, number || '-copy', amount_cents, currency, status
             FROM invoices WHERE tenant_id = '{acme}'"
        ))
        .await
        .expect("INSERT .. SELECT as the bypass role");
    bypass.batch_execute("ROLLBACK").await.expect("rollback");

    // The residual trust (docs/scaling.md): outside a tenant transaction, a session of the app
    // role can still give its transaction a distributed id of its choosing; the seal holds
    // because tenantry's transactions take theirs at the entry, before any SQL of the app.
    b.batch_execute("BEGIN").await.expect("begin");
    let chosen = lines(
        &mut b,
        "SELECT assign_distributed_transaction_id(0, 1, now())::text AS line",
    )
    .await;
    assert!(chosen.is_ok(), "{chosen:?}");
    b.batch_execute("ROLLBACK").await.expect("rollback");
}

/// Each finding of `tenantry doctor --citus` that the plan cannot fix by itself is what Citus
/// refuses on the real cluster, and a role that would not send the seal to the workers stops
/// the app's start, naming the setting.
#[tokio::test]
#[ignore = "needs a running Citus cluster: .ci/run's Citus step runs it (docs/scaling.md)"]
#[allow(clippy::disallowed_methods, reason = "schema changes as the superuser")]
async fn each_doctor_finding_is_what_citus_refuses() {
    let db = ClusterDb::create("doctor").await;
    let _one = setup_lock(&db.base).await;
    db.migrate().await;
    let mut admin = db.admin().await;
    admin
        .batch_execute(
            "CREATE TABLE notes (tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id), id uuid NOT NULL,
                                 body text, PRIMARY KEY (tenant_id, id));
             SELECT tenantry.tenantry_declare_tenant_table('notes');
             CREATE POLICY notes_recent ON notes AS RESTRICTIVE FOR SELECT
                 USING (EXISTS (SELECT 1 FROM tenantry.tenants t WHERE t.id = notes.tenant_id));
             CREATE FUNCTION notes_touch() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER notes_touch BEFORE INSERT ON notes
                 FOR EACH ROW EXECUTE FUNCTION notes_touch();
             CREATE TABLE scratch (id int PRIMARY KEY);
             CREATE TRIGGER scratch_touch BEFORE INSERT ON scratch
                 FOR EACH ROW EXECUTE FUNCTION notes_touch();",
        )
        .await
        .expect("schema");
    let findings = |report: tenantry::citus::CitusReport| -> Vec<String> {
        report.findings.iter().map(ToString::to_string).collect()
    };
    let found = findings(tenantry::citus::check(&mut admin).await.expect("check"));
    assert_eq!(found.len(), 2, "{found:#?}");
    for expected in [
        "public.notes: policy notes_recent has a subquery",
        "public.notes: trigger notes_touch on a distributed table",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(expected)),
            "{expected:?} in {found:#?}"
        );
    }
    // What Citus says to each: the policy stops the plan ...
    let mut report = tenantry::citus::check(&mut admin).await.expect("check");
    report.findings.clear();
    let script = report.script("tenantry_app");
    let mut failed = None;
    for statement in script.lines().filter(|l| !l.starts_with("--")) {
        if let Err(e) = admin.batch_execute(statement).await {
            failed = Some(e.to_string());
            break;
        }
    }
    admin.batch_execute("ROLLBACK").await.expect("rollback");
    let failed = failed.unwrap_or_default();
    assert!(failed.contains("cannot create policy"), "{failed}");
    // ... and a trigger stops a distribution unless triggers are declared safe (which the plan
    // does for tenantry's own alone: it cannot know what the application's do on the shards).
    let trigger = admin
        .batch_execute("SELECT create_distributed_table('public.scratch', 'id')")
        .await;
    assert!(
        trigger
            .as_ref()
            .is_err_and(|e| e.to_string().contains("trigger")),
        "{trigger:?}"
    );
    // Clean, the plan applies.
    admin
        .batch_execute(
            "DROP POLICY notes_recent ON notes; DROP TRIGGER notes_touch ON notes;
             DROP TABLE scratch;",
        )
        .await
        .expect("clean");
    assert_eq!(
        findings(tenantry::citus::check(&mut admin).await.expect("check")),
        Vec::<String>::new()
    );
    if let Err(e) = db.apply_plan(&mut admin).await {
        panic!("{e}");
    }

    // The app role without `local` in this database (a per-database setting, so the other
    // tests' databases keep theirs): the doctor says so, and the app does not start.
    admin
        .batch_execute(&format!(
            "ALTER ROLE tenantry_app IN DATABASE {} SET citus.propagate_set_commands = 'none'",
            db.name
        ))
        .await
        .expect("alter role");
    let finding = tenantry::citus::check_app_role(&mut admin, "tenantry_app")
        .await
        .expect("app role")
        .map(|f| f.to_string())
        .unwrap_or_default();
    assert!(
        finding.starts_with("role tenantry_app: citus.propagate_set_commands is none"),
        "{finding}"
    );
    let refused = tenantry_example::Server::build(&db.settings()).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("TENANTRY_APP_DATABASE_URL")
            && message.contains("citus.propagate_set_commands"),
        "{message}"
    );
}
