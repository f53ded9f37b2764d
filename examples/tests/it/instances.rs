//! Several instances: two processes of the example (the built binary) start at once against one
//! empty database, so their migrations run concurrently, and serve requests spread over both,
//! their request paths through PgBouncer in transaction mode (the scale-out deployment of
//! `docs/scaling.md`). Isolation holds, both answer, and the audit log has every row once.

use crate::common;

use std::process::{Child, Command};
use std::time::Duration;

use common::{admin, EMAIL_HEADER, OWNER};
use diesel_async::SimpleAsyncConnection;
use futures_util::future::join_all;
use serde_json::{json, Value};
use tenantry::testing::{PgBouncer, ScratchDatabase};

/// A running instance; killed when dropped. Its log goes to a file, shown when the test fails.
struct Instance {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- instance on {} ---\n{log}", self.port);
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn spawn(scratch: &ScratchDatabase, bouncer: &PgBouncer) -> Instance {
    // Named before the port is known: the process id and a counter.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log =
        std::env::temp_dir().join(format!("tenantry-instance-{}-{n}.log", std::process::id()));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry-example"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TENANTRY_")) {
        cmd.env_remove(k);
    }
    cmd.env("TENANTRY_AUTH_MODE", "trusted_header")
        .env("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32")
        // Migrations straight to PostgreSQL (advisory locks), requests through the pooler.
        .env("DATABASE_URL", scratch.url(None))
        .env(
            "TENANTRY_APP_DATABASE_URL",
            bouncer.url(scratch.name(), "tenantry_app"),
        )
        .env(
            "TENANTRY_BYPASS_DATABASE_URL",
            bouncer.url(scratch.name(), "tenantry_bypass"),
        )
        .env("TENANTRY_DB_POOLER", "transaction")
        .env("TENANTRY_DB_POOL_SIZE", "4")
        .env("RUST_LOG", "warn")
        .stderr(file);
    // Both instances start before either is waited for: they migrate at once.
    let child = common::start_example(&mut cmd);
    Instance {
        child,
        port: 0,
        log,
    }
}

async fn healthy(client: &reqwest::Client, instance: &mut Instance) {
    let (port, _, stdout) = common::listening(&mut instance.child).await;
    common::drain(stdout);
    instance.port = port;
    for _ in 0..600 {
        if let Some(status) = instance.child.try_wait().expect("wait") {
            panic!("the instance on {} exited: {status}", instance.port);
        }
        let url = format!("http://127.0.0.1:{}/healthz", instance.port);
        if let Ok(r) = client.get(url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the instance on {} did not come up", instance.port);
}

async fn call(
    client: &reqwest::Client,
    port: u16,
    method: reqwest::Method,
    path: &str,
    email: &str,
    body: Option<Value>,
    request_id: Option<&str>,
) -> (u16, Value) {
    let mut r = client
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .header(EMAIL_HEADER, email);
    if let Some(b) = body {
        r = r.json(&b);
    }
    if let Some(id) = request_id {
        r = r.header("x-request-id", id);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn two_instances_migrate_at_once_and_serve_one_database_in_isolation() {
    let scratch = ScratchDatabase::create("tenantry_instances").await;
    let bouncer = PgBouncer::shared().await;
    let client = reqwest::Client::new();
    // Both start on the empty database at once: their migrations run concurrently.
    let mut a = spawn(&scratch, &bouncer);
    let mut b = spawn(&scratch, &bouncer);
    healthy(&client, &mut a).await;
    healthy(&client, &mut b).await;
    let ports = [a.port, b.port];

    let mut c = admin(scratch.name()).await;
    let migrations = common_count(
        &mut c,
        "SELECT count(*) AS n FROM __diesel_schema_migrations GROUP BY version \
         ORDER BY count(*) DESC LIMIT 1",
    )
    .await;
    assert_eq!(migrations, 1, "each migration applied once");
    c.batch_execute(&format!(
        "INSERT INTO tenantry.tenants (slug, name) VALUES ('acme', 'Acme'), ('globex', 'Globex');
         INSERT INTO projects (tenant_id, name) SELECT id, slug || ' project' FROM tenantry.tenants;
         INSERT INTO tenantry.users (email, is_owner) VALUES
           ('{OWNER}', true), ('acme@example.com', false), ('globex@example.com', false);
         INSERT INTO tenantry.memberships (user_id, tenant_id, role)
           SELECT u.id, t.id, 'partner' FROM tenantry.users u JOIN tenantry.tenants t
             ON u.email = t.slug || '@example.com';"
    ))
    .await
    .expect("seed");
    // Writes of both tenants, spread over both instances, all at once.
    let projects = [
        common_text(scratch.name(), "acme").await,
        common_text(scratch.name(), "globex").await,
    ];
    let writes = (0..40).map(|i| {
        let (port, slug) = (ports[i % 2], ["acme", "globex"][(i / 2) % 2]);
        let project_id = projects[(i / 2) % 2].clone();
        let client = client.clone();
        async move {
            let body = json!({"project_id": project_id, "number": format!("N-{i}"),
                              "amount_cents": 100 + i, "currency": "EUR"});
            let email = format!("{slug}@example.com");
            let path = "/api/invoices";
            let method = reqwest::Method::POST;
            call(&client, port, method, path, &email, Some(body), None).await
        }
    });
    for (status, body) in join_all(writes).await {
        assert_eq!(status, 201, "{body}");
    }

    // Each tenant sees exactly its own 20 invoices, through either instance.
    let mut ids = std::collections::HashMap::new();
    for port in ports {
        for slug in ["acme", "globex"] {
            let email = format!("{slug}@example.com");
            let (status, list) = call(
                &client,
                port,
                reqwest::Method::GET,
                "/api/invoices?limit=500",
                &email,
                None,
                None,
            )
            .await;
            assert_eq!(status, 200, "{list}");
            let list = list.as_array().expect("a list").clone();
            assert_eq!(list.len(), 20, "{slug} on {port}");
            let tenant = &list[0]["tenant_id"];
            assert!(list.iter().all(|i| &i["tenant_id"] == tenant));
            ids.insert(slug, list[0]["id"].as_str().unwrap().to_owned());
        }
    }
    // Another tenant's invoice is 404 on either instance.
    for port in ports {
        let path = format!("/api/invoices/{}", ids["globex"]);
        let get = reqwest::Method::GET;
        let (status, _) = call(&client, port, get, &path, "acme@example.com", None, None).await;
        assert_eq!(status, 404);
    }

    // Owner calls spread over both instances: each writes exactly one audit row.
    let audited = (0..12).map(|i| {
        let client = client.clone();
        let port = ports[i % 2];
        async move {
            let id = format!("inst-{i}");
            let get = reqwest::Method::GET;
            let path = "/api/admin/tenants";
            let (status, body) = call(&client, port, get, path, OWNER, None, Some(&id)).await;
            assert_eq!(status, 200, "{body}");
            let totals: Vec<i64> = body
                .as_array()
                .expect("a list")
                .iter()
                .map(|t| t["invoice_count"].as_i64().unwrap())
                .collect();
            assert_eq!(totals, vec![20, 20]);
        }
    });
    join_all(audited).await;
    for i in 0..12 {
        let n = common_count(
            &mut c,
            &format!("SELECT count(*) AS n FROM tenantry.audit_log WHERE request_id = 'inst-{i}'"),
        )
        .await;
        assert_eq!(n, 1, "audit row of inst-{i}");
    }
    assert_eq!(
        common_count(&mut c, "SELECT count(*) AS n FROM tenantry.audit_log").await,
        12,
        "no other audit row"
    );
    assert_eq!(
        common_count(
            &mut c,
            "SELECT count(*) AS n FROM (SELECT number FROM invoices GROUP BY tenant_id, number \
             HAVING count(*) > 1) d"
        )
        .await,
        0,
        "every invoice once"
    );
    assert_eq!(
        common_count(&mut c, "SELECT count(*) AS n FROM invoices").await,
        40
    );
    // Both still answer.
    for port in ports {
        let r = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status(), 200);
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]
async fn common_count(c: &mut diesel_async::AsyncPgConnection, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// The id of the project of tenant `slug`, as text.
#[allow(
    clippy::disallowed_methods,
    reason = "test setup and probes as the superuser, with raw SQL on purpose"
)]
async fn common_text(db: &str, slug: &str) -> String {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct T {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
    }
    let mut c = admin(db).await;
    diesel::sql_query(
        "SELECT p.id::text AS t FROM projects p JOIN tenantry.tenants t ON t.id = p.tenant_id WHERE t.slug = $1",
    )
    .bind::<diesel::sql_types::Text, _>(slug)
    .get_result::<T>(&mut c)
    .await
    .expect("project")
    .t
}
