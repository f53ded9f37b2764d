//! Test support: the example app served over real HTTP on 127.0.0.1 against a scratch database.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenantry::settings::Settings;
use tenantry::testing::{connect_superuser, PgBouncer, ScratchDatabase};
use uuid::Uuid;

pub use tenantry::testing::Route;

pub const PARTNER: &str = "partner@example.com";
pub const VIEWER: &str = "viewer@example.com";
pub const OWNER: &str = "owner@example.com";
pub const LONELY: &str = "lonely@example.com";
pub const EMAIL_HEADER: &str = "cf-access-authenticated-user-email";

/// A superuser connection to database `db` (fails loudly, saying what to start).
pub async fn admin(db: &str) -> AsyncPgConnection {
    connect_superuser(db).await
}

/// A running example app and its scratch database.
pub struct App {
    pub base: String,
    pub addr: SocketAddr,
    pub db: String,
    pub client: reqwest::Client,
    pub tenants: HashMap<&'static str, Uuid>,
    pub projects: HashMap<&'static str, Uuid>,
    /// The server's database handle (its principal cache's status).
    pub handle: tenantry::Db,
    /// Where `GET /metrics` is served (`TENANTRY_METRICS_BIND`), if anywhere.
    pub metrics: Option<SocketAddr>,
    settings: Settings,
    _scratch: Arc<ScratchDatabase>,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

impl App {
    /// The app in `trusted_header` mode (peer 127.0.0.1 trusted), three tenants seeded.
    pub async fn start() -> Self {
        Self::start_with(&[
            ("TENANTRY_AUTH_MODE", "trusted_header"),
            ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ])
        .await
    }

    /// The app with extra settings.
    pub async fn start_with(vars: &[(&str, &str)]) -> Self {
        Self::start_custom(vars, |_| Vec::new()).await
    }

    /// [`App::start`] with its request path (app and bypass pools) reaching the database by
    /// `route`.
    pub async fn start_through(route: Route) -> Self {
        let vars = [
            ("TENANTRY_AUTH_MODE", "trusted_header"),
            ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ];
        match route {
            Route::Direct => Self::start_with(&vars).await,
            Route::PgBouncer => {
                let bouncer = PgBouncer::shared().await;
                Self::start_custom(&vars, |scratch| {
                    vec![
                        (
                            "TENANTRY_APP_DATABASE_URL".into(),
                            bouncer.url(scratch.name(), "tenantry_app"),
                        ),
                        (
                            "TENANTRY_BYPASS_DATABASE_URL".into(),
                            bouncer.url(scratch.name(), "tenantry_bypass"),
                        ),
                        ("TENANTRY_DB_POOLER".into(), "transaction".into()),
                    ]
                })
                .await
            }
        }
    }

    /// The app with extra settings, some of which depend on its scratch database (e.g. the
    /// request path's URLs through a `FaultProxy`).
    pub async fn start_custom(
        vars: &[(&str, &str)],
        more: impl FnOnce(&ScratchDatabase) -> Vec<(String, String)>,
    ) -> Self {
        // The app's log, shown with a failing test's output.
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        // A copy of a template the example's migrations ran on once (its start then applies
        // nothing and grants the roles this database); with other role names the migrations
        // must create their policies for those roles, so the database starts empty.
        let scratch = if vars.iter().any(|(k, _)| k.contains("ROLE")) {
            ScratchDatabase::create("tenantry_ex").await
        } else {
            ScratchDatabase::from_template("tenantry_ex", "example", async |conn| {
                let mut conn = tenantry::migrate_with(conn, tenantry_example::models::MIGRATIONS)
                    .await
                    .expect("the example's migrations")
                    .conn;
                tenantry::declare_tables(&mut conn, &tenantry_example::models::declarations())
                    .await
                    .expect("the example's declarations");
            })
            .await
        };
        let db = scratch.name().to_owned();
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("DATABASE_URL".into(), scratch.url(None));
        env.insert("TENANTRY_BIND".into(), "127.0.0.1:0".into());
        for (k, v) in vars {
            env.insert((*k).into(), (*v).into());
        }
        env.extend(more(&scratch));
        let settings = Settings::from_map(&env).expect("settings");
        let server = tenantry_example::Server::build(&settings)
            .await
            .expect("server starts");
        let addr = server.addr;
        let handle = server.db().clone();
        let metrics = server.metrics_addr();
        tokio::spawn(server.serve());
        let mut app = App {
            base: format!("http://{addr}"),
            addr,
            db,
            client: reqwest::Client::new(),
            tenants: HashMap::new(),
            projects: HashMap::new(),
            handle,
            metrics,
            settings,
            _scratch: Arc::new(scratch),
        };
        app.seed().await;
        app
    }

    /// A second instance of the app on the same database and settings (another port), as a
    /// deployment runs several.
    pub async fn another_instance(&self) -> App {
        let server = tenantry_example::Server::build(&self.settings)
            .await
            .expect("second instance starts");
        let addr = server.addr;
        let handle = server.db().clone();
        tokio::spawn(server.serve());
        App {
            base: format!("http://{addr}"),
            addr,
            db: self.db.clone(),
            client: reqwest::Client::new(),
            tenants: self.tenants.clone(),
            projects: self.projects.clone(),
            handle,
            metrics: None,
            settings: self.settings.clone(),
            _scratch: self._scratch.clone(),
        }
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "test setup and probes as the superuser, with raw SQL on purpose"
    )]
    async fn seed(&mut self) {
        let mut c = admin(&self.db).await;
        for slug in ["acme", "globex", "initech"] {
            let t: IdRow = diesel::sql_query(
                "INSERT INTO tenantry.tenants (slug, name) VALUES ($1, $2) RETURNING id",
            )
            .bind::<Text, _>(slug)
            .bind::<Text, _>(format!("{slug} inc"))
            .get_result(&mut c)
            .await
            .expect("tenant");
            self.tenants.insert(slug, t.id);
            let p: IdRow = diesel::sql_query(
                "INSERT INTO projects (tenant_id, name) VALUES ($1, $2) RETURNING id",
            )
            .bind::<SqlUuid, _>(t.id)
            .bind::<Text, _>(format!("{slug} project"))
            .get_result(&mut c)
            .await
            .expect("project");
            self.projects.insert(slug, p.id);
            diesel::sql_query(
                "INSERT INTO invoices (tenant_id, project_id, number, amount_cents, currency, status)
                 SELECT $1, $2, 'INV-' || i, i * 100, CASE WHEN i = 3 THEN 'USD' ELSE 'EUR' END,
                        CASE WHEN i = 2 THEN 'void' ELSE 'draft' END
                 FROM generate_series(1, 3) i",
            )
            .bind::<SqlUuid, _>(t.id)
            .bind::<SqlUuid, _>(p.id)
            .execute(&mut c)
            .await
            .expect("invoices");
        }
        c.batch_execute(&format!(
            "INSERT INTO tenantry.users (email, is_owner) VALUES ('{OWNER}', true), ('{PARTNER}', false), ('{VIEWER}', false), ('{LONELY}', false);
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, 'partner' FROM tenantry.users u, tenantry.tenants t WHERE u.email = '{PARTNER}' AND t.slug IN ('acme', 'globex');
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, 'client_viewer' FROM tenantry.users u, tenantry.tenants t WHERE u.email = '{VIEWER}' AND t.slug = 'acme';"
        ))
        .await
        .expect("users");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request as `email` (trusted header) acting in `tenant` (slug), if given.
    pub fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        email: Option<&str>,
        tenant: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, self.url(path));
        if let Some(e) = email {
            r = r.header(EMAIL_HEADER, e);
        }
        if let Some(t) = tenant {
            r = r.header("x-tenant", t);
        }
        r
    }

    pub async fn get(
        &self,
        path: &str,
        email: &str,
        tenant: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let r = self
            .req(reqwest::Method::GET, path, Some(email), tenant)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        email: &str,
        tenant: Option<&str>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .req(method, path, Some(email), tenant)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Count rows as the superuser (ignores row-level security).
    #[allow(
        clippy::disallowed_methods,
        reason = "test setup and probes as the superuser, with raw SQL on purpose"
    )]
    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = admin(&self.db).await;
        diesel::sql_query(sql)
            .get_result::<N>(&mut c)
            .await
            .expect("count")
            .n
    }

    /// One invoice of `tenant` as JSON-ish text, read as the superuser.
    #[allow(
        clippy::disallowed_methods,
        reason = "test setup and probes as the superuser, with raw SQL on purpose"
    )]
    pub async fn invoice_row(&self, id: Uuid) -> String {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            row: String,
        }
        let mut c = admin(&self.db).await;
        diesel::sql_query("SELECT row_to_json(i)::text AS row FROM invoices i WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .get_result::<Row>(&mut c)
            .await
            .expect("row")
            .row
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "test setup and probes as the superuser, with raw SQL on purpose"
    )]
    pub async fn invoice_of(&self, slug: &str) -> Uuid {
        let mut c = admin(&self.db).await;
        diesel::sql_query("SELECT id FROM invoices WHERE tenant_id = $1 ORDER BY number LIMIT 1")
            .bind::<SqlUuid, _>(self.tenants[slug])
            .get_result::<IdRow>(&mut c)
            .await
            .expect("invoice")
            .id
    }
}

/// The number of backends the role `role` has open in database `db`, but for the directory
/// listener's session (which is not a pool's).
#[allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]
pub async fn backends(db: &str, role: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut c = admin("postgres").await;
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND usename = $2
         AND application_name <> 'tenantry listener'",
    )
    .bind::<Text, _>(db)
    .bind::<Text, _>(role)
    .get_result::<N>(&mut c)
    .await
    .expect("pg_stat_activity")
    .n
}

/// Waits until `n` sessions of `role` on database `db` wait for a lock (a row or table lock
/// the test holds), at most 30 s. Polled: PostgreSQL signals no event when a session starts to
/// wait, and `pg_stat_activity` is where it shows.
#[allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]
pub async fn until_waiting_for_a_lock(db: &str, role: &str, n: i64) {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut c = admin("postgres").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND usename = $2
             AND wait_event_type = 'Lock'",
        )
        .bind::<Text, _>(db)
        .bind::<Text, _>(role)
        .get_result::<N>(&mut c)
        .await
        .expect("pg_stat_activity")
        .n;
        if waiting >= n {
            return;
        }
        if std::time::Instant::now() > deadline {
            #[derive(QueryableByName)]
            struct Session {
                #[diesel(sql_type = Text)]
                line: String,
            }
            let sessions: Vec<String> = diesel::sql_query(
                "SELECT concat_ws(' | ', usename, state, wait_event_type, wait_event, query) AS line
                 FROM pg_stat_activity WHERE datname = $1",
            )
            .bind::<Text, _>(db)
            .load::<Session>(&mut c)
            .await
            .expect("pg_stat_activity")
            .into_iter()
            .map(|s| s.line)
            .collect();
            panic!(
                "{waiting} of {n} sessions of {role} wait for the lock after 30 s: {sessions:#?}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `host:port` of the test server, for a `FaultProxy`.
pub fn pg_upstream() -> String {
    let url = url::Url::parse(&tenantry::testing::server_url()).expect("a URL");
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
}

/// Asserts the contract's error shape and code.
pub fn assert_error(body: &serde_json::Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// The example binary, started from `cmd` on a port the kernel picks (`TENANTRY_BIND=
/// 127.0.0.1:0`): a port a test picked and let go could be taken by another test's server before
/// the binary binds it, and the test would then talk to that server. Returned once it listens:
/// the child, its port, what it printed before, and the rest of its stdout ([`listening`]).
pub async fn spawn_example(
    cmd: &mut std::process::Command,
) -> (
    std::process::Child,
    u16,
    String,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut child = start_example(cmd);
    let (port, before, stdout) = listening(&mut child).await;
    (child, port, before, stdout)
}

/// Starts the example binary from `cmd` on a port the kernel picks, its stdout piped for
/// [`listening`], without waiting for it.
pub fn start_example(cmd: &mut std::process::Command) -> std::process::Child {
    cmd.env("TENANTRY_BIND", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the example starts")
}

/// Reads a started example's stdout up to the line `main.rs` prints once it listens: its port,
/// what it printed before that line, and the rest of its stdout (read it, or [`drain`] it so the
/// binary never blocks on a full pipe). Panics, with its output, if it exits first.
pub async fn listening(
    child: &mut std::process::Child,
) -> (u16, String, std::io::BufReader<std::process::ChildStdout>) {
    use std::io::BufRead;
    let stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let (port, before, stdout) = tokio::task::spawn_blocking(move || {
        let mut stdout = stdout;
        let mut before = String::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).expect("the example's stdout") == 0 {
                return (None, before, stdout);
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr: SocketAddr = rest
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("an address in {line:?}"));
                return (Some(addr.port()), before, stdout);
            }
            before.push_str(&line);
        }
    })
    .await
    .expect("reading the example's stdout");
    let Some(port) = port else {
        let status = child.wait();
        panic!("the example exited before it listened ({status:?}); its output:\n{before}");
    };
    (port, before, stdout)
}

/// Reads and drops the rest of a child's stdout on a thread of its own.
pub fn drain(mut stdout: std::io::BufReader<std::process::ChildStdout>) {
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
}
