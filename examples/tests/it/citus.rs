//! Citus-ready, checked without Citus: the example's schema passes `tenantry::citus::check`, and
//! every statement the example sends on its request path filters each tenant table it touches by
//! `tenant_id = $n`, bound to the transaction's own tenant (joins and subqueries included),
//! which is what lets Citus route the statement to one shard. The statements are read off the
//! wire by a recording proxy (`FaultProxy::record`) between the app and PostgreSQL.
//!
//! Run against a Citus coordinator (`TENANTRY_TEST_DATABASE_URL`, docs/scaling.md; CI's Citus
//! step), the same tests also `EXPLAIN` each recorded statement with the parameters it was sent
//! with: every one is a router query, one task on one shard.

use crate::common;

use std::collections::HashMap;

use common::{admin, pg_upstream, App, OWNER, PARTNER, VIEWER};
use reqwest::Method;
use serde_json::json;
use tenantry::testing::{Executed, FaultProxy};
use uuid::Uuid;

/// The example's tenant tables.
const TENANT_TABLES: [&str; 2] = ["projects", "invoices"];

#[tokio::test]
async fn the_examples_schema_is_ready_for_citus() {
    let app = App::start().await;
    let mut c = admin(&app.db).await;
    let report = tenantry::citus::check(&mut c).await.expect("check");
    assert!(report.is_ok(), "{:#?}", report.findings);
    let script = report.script("tenantry_app");
    let statements: Vec<&str> = script.lines().filter(|l| !l.starts_with("--")).collect();
    let placements: Vec<&str> = statements
        .iter()
        .copied()
        .filter(|l| l.starts_with("SELECT create_") || l.starts_with("SELECT citus_"))
        .collect();
    assert_eq!(
        placements,
        [
            "SELECT create_reference_table('public.currencies');",
            "SELECT create_reference_table('tenantry.tenantry_tenant_keys');",
            "SELECT create_reference_table('tenantry.tenants');",
            "SELECT create_reference_table('tenantry.users');",
            "SELECT create_reference_table('tenantry.memberships');",
            "SELECT citus_add_local_table_to_metadata('tenantry.audit_log');",
            "SELECT create_distributed_table('public.projects', 'tenant_id');",
            "SELECT create_distributed_table('public.invoices', 'tenant_id', colocate_with => 'public.projects');",
            "SELECT create_distributed_table('tenantry.tenantry_jobs', 'tenant_id', colocate_with => 'public.projects');",
        ]
    );
    assert_eq!(statements.first(), Some(&"BEGIN;"), "{script}");
    assert_eq!(statements.last(), Some(&"COMMIT;"), "{script}");
    assert!(
        statements.contains(&"ALTER ROLE tenantry_app SET citus.propagate_set_commands = 'local';"),
        "{script}"
    );
}

/// Why a statement would not be routed to one shard, if it would not.
fn unroutable(sql: &str, params: &[Option<Vec<u8>>], tenant: Option<Uuid>) -> Option<String> {
    let param = |n: usize| params.get(n - 1).cloned().flatten();
    for table in TENANT_TABLES {
        let quoted = format!("\"{table}\"");
        let relations = ["FROM ", "JOIN ", "INTO ", "UPDATE "]
            .iter()
            .map(|kw| {
                sql.match_indices(kw)
                    .filter(|(i, _)| {
                        sql[i + kw.len()..]
                            .trim_start_matches('(')
                            .starts_with(&quoted)
                    })
                    .count()
            })
            .sum::<usize>();
        if relations == 0 {
            continue;
        }
        let Some(tenant) = tenant else {
            return Some(format!("{table} outside a tenant transaction"));
        };
        // The parameters that carry the tenant of each occurrence.
        let mut tenant_params = Vec::new();
        let insert = format!("INSERT INTO {quoted} (");
        if let Some(rest) = sql.strip_prefix(&insert) {
            let columns: Vec<&str> = rest[..rest.find(')')?].split(", ").collect();
            let Some(at) = columns.iter().position(|c| *c == "\"tenant_id\"") else {
                return Some(format!("an insert into {table} without tenant_id"));
            };
            let values = &rest[rest.find(") VALUES ")? + ") VALUES ".len()..];
            for tuple in values.split("), (") {
                let value = tuple.trim_start_matches('(').split(", ").nth(at)?;
                tenant_params.push(value.trim_end_matches(')').to_owned());
            }
        } else {
            let predicate = format!("{quoted}.\"tenant_id\" = $");
            for (i, _) in sql.match_indices(&predicate) {
                // In a conjunction of a WHERE or ON clause, never under an OR.
                let before = sql[..i].trim_end_matches(['(', ' ']);
                if !(before.ends_with("WHERE") || before.ends_with("ON") || before.ends_with("AND"))
                {
                    return Some(format!("{table}'s tenant filter is not a conjunct"));
                }
                let digits: String = sql[i + predicate.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                tenant_params.push(format!("${digits}"));
            }
        }
        if tenant_params.len() < relations {
            return Some(format!(
                "{table} appears {relations} times but is filtered by its tenant {} times",
                tenant_params.len()
            ));
        }
        for p in tenant_params {
            let n: usize = p.trim_start_matches('$').parse().ok()?;
            if param(n).as_deref() != Some(tenant.as_bytes().as_slice()) {
                return Some(format!(
                    "{table}'s tenant parameter {p} is not the tenant {tenant}"
                ));
            }
        }
    }
    None
}

/// Checks every recorded statement; returns how many touched a tenant table.
fn check_all(executed: &[Executed]) -> HashMap<String, usize> {
    let mut tenant_of: HashMap<u64, Uuid> = HashMap::new();
    let mut seen = HashMap::new();
    for e in executed {
        // A tenant transaction starts with the seal's entry, whose first parameter is the tenant
        // (16 bytes, binary).
        if e.sql.starts_with("SELECT tenantry.tenantry_enter(") {
            let tenant = e.params.first().cloned().flatten().expect("the tenant");
            tenant_of.insert(e.connection, Uuid::from_slice(&tenant).expect("a uuid"));
            continue;
        }
        if e.simple {
            if e.sql.starts_with("COMMIT") || e.sql.starts_with("ROLLBACK") {
                tenant_of.remove(&e.connection);
            }
            assert!(
                !TENANT_TABLES
                    .iter()
                    .any(|t| e.sql.contains(&format!("\"{t}\""))),
                "a simple query touches a tenant table: {}",
                e.sql
            );
            continue;
        }
        if let Some(why) = unroutable(&e.sql, &e.params, tenant_of.get(&e.connection).copied()) {
            panic!("not routable to one shard: {why}:\n{}", e.sql);
        }
        for t in TENANT_TABLES {
            if e.sql.contains(&format!("\"{t}\"")) {
                let verb = e.sql.split_whitespace().next().unwrap_or("").to_owned();
                *seen.entry(format!("{verb} {t}")).or_insert(0) += 1;
            }
        }
    }
    seen
}

#[tokio::test]
async fn every_request_path_statement_filters_each_tenant_table_by_its_tenant() {
    let proxy = FaultProxy::start(pg_upstream()).await.expect("proxy");
    let app = App::start_custom(
        &[
            ("TENANTRY_AUTH_MODE", "trusted_header"),
            ("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
        |scratch| {
            vec![(
                "TENANTRY_APP_DATABASE_URL".into(),
                proxy.url(&scratch.url(Some("tenantry_app"))),
            )]
        },
    )
    .await;
    proxy.record();

    // Every route that acts in a tenant, by each role that may, with the inputs that take
    // each path through its handler.
    for (who, tenant) in [(PARTNER, "acme"), (VIEWER, "acme"), (OWNER, "globex")] {
        for path in [
            "/api/me",
            "/api/projects",
            "/api/invoices",
            "/api/invoices?status=draft&limit=2",
        ] {
            let (s, body) = app.get(path, who, Some(tenant)).await;
            assert_eq!(s, 200, "{path} {body}");
        }
        let own = app.invoice_of(tenant).await;
        let other = app.invoice_of("initech").await;
        for id in [own, other] {
            app.get(&format!("/api/invoices/{id}"), who, Some(tenant))
                .await;
        }
    }
    let project = app.projects["acme"];
    for body in [
        json!({"project_id": project, "number": "C-1", "amount_cents": 5, "currency": "EUR"}),
        json!({"project_id": project, "number": "C-1", "amount_cents": 5, "currency": "EUR"}),
        json!({"project_id": app.projects["globex"], "number": "C-2", "amount_cents": 5, "currency": "EUR"}),
        json!({"project_id": project, "number": "C-3", "amount_cents": 5, "currency": "XXX"}),
    ] {
        app.send_json(Method::POST, "/api/invoices", PARTNER, Some("acme"), body)
            .await;
    }
    let (s, _) = app
        .send_json(
            Method::POST,
            "/api/projects",
            PARTNER,
            Some("acme"),
            json!({"name": "Scale-out"}),
        )
        .await;
    assert_eq!(s, 201);
    let own = app.invoice_of("acme").await;
    let other = app.invoice_of("globex").await;
    for id in [own, other] {
        let path = format!("/api/invoices/{id}");
        app.send_json(
            Method::PATCH,
            &path,
            PARTNER,
            Some("acme"),
            json!({"status": "sent", "amount_cents": 7}),
        )
        .await;
        app.req(Method::DELETE, &path, Some(PARTNER), Some("acme"))
            .send()
            .await
            .expect("delete");
    }

    let executed = proxy.executed();
    let seen = check_all(&executed);
    router_queries_on_citus(&app.db, &executed).await;
    for kind in [
        "SELECT projects",
        "INSERT projects",
        "SELECT invoices",
        "INSERT invoices",
        "UPDATE invoices",
        "DELETE invoices",
    ] {
        assert!(seen.contains_key(kind), "no {kind} recorded: {seen:?}");
    }
}

#[tokio::test]
async fn scoped_joins_and_subqueries_are_routable_too() {
    use tenantry::prelude::*;
    use tenantry_example::models::{Invoice, Project};
    use tenantry_example::schema::{currencies, invoices, projects};

    let proxy = FaultProxy::start(pg_upstream()).await.expect("proxy");
    let app = App::start().await;
    let url = proxy.url(&tenantry::testing::database_url(
        &app.db,
        Some("tenantry_app"),
    ));
    let db = tenantry::Db::connect(tenantry::DbConfig::new(url, None))
        .await
        .expect("pools through the proxy");
    proxy.record();
    let acme = app.tenants["acme"];
    let ctx: tenantry::TenantCtx =
        tenantry::TenantCtx::for_test(acme, tenantry::Actor::user(Uuid::new_v4(), "t@x.y"));
    let counts = db
        .tx(&ctx, async |conn| {
            let inner: Vec<(Invoice, Project)> = Invoice::scoped(conn)
                .inner_join(projects::table)
                .load(conn)
                .await?;
            let left: Vec<(Invoice, Option<Project>)> = Invoice::scoped(conn)
                .left_join(projects::table)
                .load(conn)
                .await?;
            let global: i64 = Invoice::scoped(conn)
                .inner_join(currencies::table)
                .count()
                .get_result(conn)
                .await?;
            let mine = Project::scoped(conn).select(projects::id).subquery();
            let via_subquery: Vec<Invoice> = Invoice::scoped(conn)
                .filter(invoices::project_id.eq_any(mine))
                .load(conn)
                .await?;
            Ok::<_, tenantry::DbError>([
                inner.len(),
                left.len(),
                global as usize,
                via_subquery.len(),
            ])
        })
        .await
        .expect("transaction");
    assert_eq!(counts, [3, 3, 3, 3]);
    let executed = proxy.executed();
    assert!(
        executed
            .iter()
            .any(|e| e.sql.contains("INNER JOIN \"projects\"")),
        "{executed:#?}"
    );
    let seen = check_all(&executed);
    router_queries_on_citus(&app.db, &executed).await;
    assert_eq!(seen.get("SELECT invoices"), Some(&4), "{seen:?}");
}

/// On a Citus coordinator, the test kit's databases are distributed by the plan and the seeded
/// tenants' rows are on both workers: `acme` on one, `globex` on the other. (Nothing to check on
/// plain PostgreSQL.)
#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "a probe of Citus's catalog as the superuser"
)]
async fn on_citus_the_tenants_rows_are_on_both_workers() {
    use diesel_async::RunQueryDsl;
    if !tenantry::testing::on_citus().await {
        return;
    }
    #[derive(diesel::QueryableByName)]
    struct Worker {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        port: i32,
    }
    let app = App::start().await;
    let mut c = admin(&app.db).await;
    let mut ports = Vec::new();
    for slug in ["acme", "globex"] {
        let w: Worker = diesel::sql_query(
            "SELECT nodeport::int AS port FROM pg_dist_shard_placement \
             WHERE shardid = get_shard_id_for_distribution_column('invoices', $1)",
        )
        .bind::<diesel::sql_types::Uuid, _>(app.tenants[slug])
        .get_result(&mut c)
        .await
        .expect("the shard's placement");
        ports.push(w.port);
    }
    assert_ne!(ports[0], ports[1], "acme and globex on one worker");
    let (s, invoices) = app.get("/api/invoices", PARTNER, Some("globex")).await;
    assert_eq!((s, invoices.as_array().map(Vec::len)), (200, Some(3)));
}

/// A parameter exactly as the app sent it (binary), whatever its type.
#[derive(Debug)]
struct Sent<'a>(Option<&'a [u8]>);

impl tokio_postgres::types::ToSql for Sent<'_> {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match self.0 {
            Some(b) => {
                out.extend_from_slice(b);
                tokio_postgres::types::IsNull::No
            }
            None => tokio_postgres::types::IsNull::Yes,
        })
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

/// On a Citus coordinator: `EXPLAIN`s each recorded statement that touches a tenant table, bound
/// with the parameters it was sent with, and asserts that Citus runs it as one task (a router
/// query on one shard). Nothing on plain PostgreSQL.
async fn router_queries_on_citus(db: &str, executed: &[Executed]) {
    if !tenantry::testing::on_citus().await {
        return;
    }
    let url = tenantry::testing::database_url(db, None);
    let config: tokio_postgres::Config = url.parse().expect("a URL");
    let addr = pg_upstream();
    let socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("the coordinator");
    let (client, connection) = config
        .connect_raw(socket, tokio_postgres::NoTls)
        .await
        .expect("the coordinator");
    tokio::spawn(connection);
    let mut explained = 0;
    for e in executed.iter().filter(|e| {
        !e.simple
            && TENANT_TABLES
                .iter()
                .any(|t| e.sql.contains(&format!("\"{t}\"")))
    }) {
        let params: Vec<Sent<'_>> = e.params.iter().map(|p| Sent(p.as_deref())).collect();
        let rows = client
            .query_raw(&format!("EXPLAIN {}", e.sql), params.iter())
            .await
            .unwrap_or_else(|err| panic!("EXPLAIN {}: {err}", e.sql));
        let plan: Vec<String> = futures_util::TryStreamExt::try_collect::<Vec<_>>(rows)
            .await
            .unwrap_or_else(|err| panic!("EXPLAIN {}: {err}", e.sql))
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Task Count: 1\n") || plan.ends_with("Task Count: 1"),
            "not a router query on Citus:\n{}\n{plan}",
            e.sql
        );
        explained += 1;
    }
    assert!(explained > 0, "no statement of a tenant table recorded");
}

/// The check above is not vacuous: each way a statement would reach every shard is caught.
#[test]
fn the_check_catches_what_citus_could_not_route_to_one_shard() {
    let tenant = Uuid::new_v4();
    let other = Uuid::new_v4();
    let bound = |ids: &[Uuid]| -> Vec<Option<Vec<u8>>> {
        ids.iter().map(|u| Some(u.as_bytes().to_vec())).collect()
    };
    let ok = [
        (
            r#"SELECT "invoices"."id" FROM "invoices" WHERE (("invoices"."tenant_id" = $1) AND ("invoices"."id" = $2))"#,
            bound(&[tenant, other]),
        ),
        (
            r#"INSERT INTO "invoices" ("tenant_id", "number") VALUES ($1, $2), ($3, $4)"#,
            bound(&[tenant, other, tenant, other]),
        ),
    ];
    for (sql, params) in &ok {
        assert_eq!(unroutable(sql, params, Some(tenant)), None, "{sql}");
    }
    let caught = [
        // no tenant filter
        (
            r#"SELECT "invoices"."id" FROM "invoices" WHERE ("invoices"."id" = $1)"#,
            bound(&[tenant]),
        ),
        // a joined tenant table without its own filter
        (
            r#"SELECT 1 FROM ("invoices" INNER JOIN "projects" ON ("invoices"."project_id" = "projects"."id")) WHERE ("invoices"."tenant_id" = $1)"#,
            bound(&[tenant]),
        ),
        // the filter under an OR
        (
            r#"SELECT 1 FROM "invoices" WHERE (("invoices"."id" = $2) OR ("invoices"."tenant_id" = $1))"#,
            bound(&[tenant, other]),
        ),
        // bound to another tenant than the transaction's
        (
            r#"DELETE FROM "invoices" WHERE (("invoices"."tenant_id" = $1) AND ("invoices"."id" = $2))"#,
            bound(&[other, tenant]),
        ),
        // an insert whose rows do not all carry the tenant
        (
            r#"INSERT INTO "invoices" ("tenant_id", "number") VALUES ($1, $2), ($3, $4)"#,
            bound(&[tenant, other, other, tenant]),
        ),
    ];
    for (sql, params) in caught {
        assert!(unroutable(sql, &params, Some(tenant)).is_some(), "{sql}");
    }
    assert!(
        unroutable(ok[0].0, &ok[0].1, None).is_some(),
        "outside a tenant transaction"
    );
}
