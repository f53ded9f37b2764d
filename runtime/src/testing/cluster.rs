//! Scratch databases on a Citus cluster, so that the same tests run against a coordinator with
//! their rows on the workers.
//!
//! When `TENANTRY_TEST_DATABASE_URL` names a database of a Citus coordinator that lists active
//! workers (`bash ../shared/citus/cluster.sh start citus_ci`, then
//! `TENANTRY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5440/citus_ci`), every scratch
//! database is created on every node with citus in it and the nodes registered (Citus does not
//! propagate `CREATE DATABASE`), and dropped on every node. A database made for a migration set
//! ([`ScratchDatabase::from_template`](super::ScratchDatabase::from_template)) is a copy of that
//! set's template, and the template is a database of the whole cluster too: made once per set
//! and test binary on every node, migrated, then distributed by `tenantry citus-plan`'s script,
//! applied as printed, with the tenants it gets without a given id alternating between the
//! workers (so a test's `acme` and `globex` are on different workers). Each test's database is
//! then `CREATE DATABASE <name> TEMPLATE <template>` on every node, under one name: the
//! coordinator's copy holds Citus's metadata (nodes, shards, placements) and each worker's copy
//! the shards that metadata places there, so the copies form a cluster of their own. On plain
//! PostgreSQL none of this happens.

use std::sync::OnceLock;

use diesel::sql_types::{Bool, Integer, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::scratch::{connect_superuser, server_url};

/// The advisory lock (on the coordinator's `postgres` database) that databases are set up,
/// migrated and distributed under: roles are shared by every database of the cluster, and
/// `citus_add_node` (which copies the roles to the worker), the migrations' grants and the
/// plan's `ALTER ROLE` on two databases at once fail ("tuple concurrently updated").
const LOCK: &str = "hashtext('tenantry_test_citus')";

/// The app role the plan's script sends the seal to the workers for.
const APP_ROLE: &str = "tenantry_app";

/// A node of the cluster: host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) host: String,
    pub(super) port: u16,
}

static WORKERS: OnceLock<Option<Vec<Node>>> = OnceLock::new();

#[derive(QueryableByName)]
struct Installed {
    #[diesel(sql_type = Bool)]
    installed: bool,
}

#[derive(QueryableByName)]
struct NodeRow {
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = Integer)]
    port: i32,
}

/// The workers of the test server when it is a Citus coordinator with workers (read once per
/// process); `None` on plain PostgreSQL.
#[allow(
    clippy::disallowed_methods,
    reason = "the test server's catalogs, literal SQL as the superuser"
)]
pub(super) async fn workers() -> Option<&'static [Node]> {
    if let Some(known) = WORKERS.get() {
        return known.as_deref();
    }
    let url = server_url();
    let mut conn = crate::pool::tls::establish(&url).await.ok()?;
    let installed: Installed = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS installed",
    )
    .get_result(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("reading the test server's extensions: {e}"));
    let found = if installed.installed {
        let rows: Vec<NodeRow> = diesel::sql_query(
            "SELECT nodename AS host, nodeport AS port FROM pg_dist_node \
             WHERE groupid <> 0 AND isactive AND noderole = 'primary' ORDER BY nodeport",
        )
        .load(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("reading the coordinator's workers: {e}"));
        let nodes: Vec<Node> = rows
            .into_iter()
            .map(|r| Node {
                host: r.host,
                port: u16::try_from(r.port).unwrap_or(5432),
            })
            .collect();
        (!nodes.is_empty()).then_some(nodes)
    } else {
        None
    };
    WORKERS.get_or_init(|| found).as_deref()
}

/// Whether the test server is a Citus coordinator with workers (see the module docs): scratch
/// databases are then created on every node and distributed by `tenantry citus-plan`'s script.
pub async fn on_citus() -> bool {
    workers().await.is_some()
}

/// The superuser URL of `database` on `node`.
pub(super) fn node_url(node: &Node, database: &str) -> String {
    let mut url = url::Url::parse(&server_url())
        .unwrap_or_else(|e| panic!("TENANTRY_TEST_DATABASE_URL is not a URL: {e}"));
    let _ = url.set_host(Some(&node.host));
    let _ = url.set_port(Some(node.port));
    url.set_path(database);
    url.to_string()
}

async fn connect_node(node: &Node, database: &str) -> AsyncPgConnection {
    let url = node_url(node, database);
    crate::pool::tls::establish(&url)
        .await
        .unwrap_or_else(|e| panic!("the Citus worker {}:{} ({e})", node.host, node.port))
}

/// `name`, empty, on the workers too, with citus in it on every node and the nodes registered
/// (after the coordinator made it).
pub(super) async fn spread(name: &str, workers: &[Node]) {
    let mut lock = locked().await;
    for node in workers {
        connect_node(node, "postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating {name} on {}:{}: {e}", node.host, node.port));
        exec(
            &mut connect_node(node, name).await,
            "CREATE EXTENSION citus",
        )
        .await;
    }
    let mut coordinator = connect_superuser(name).await;
    exec(&mut coordinator, "CREATE EXTENSION citus").await;
    let server = url::Url::parse(&server_url())
        .unwrap_or_else(|e| panic!("TENANTRY_TEST_DATABASE_URL is not a URL: {e}"));
    let (host, port) = (
        server.host_str().unwrap_or("127.0.0.1").to_owned(),
        server.port().unwrap_or(5432),
    );
    exec(
        &mut coordinator,
        &format!("SELECT citus_set_coordinator_host('{host}', {port})"),
    )
    .await;
    for node in workers {
        exec(
            &mut coordinator,
            &format!("SELECT citus_add_node('{}', {})", node.host, node.port),
        )
        .await;
    }
    exec(&mut lock, &format!("SELECT pg_advisory_unlock({LOCK})")).await;
}

/// The lock the test kit sets a Citus database up under, held by a test that sets one up by
/// itself (made, given citus and its nodes, migrated, or given `tenantry citus-plan`'s script),
/// beside the kit's own databases: roles are shared by every database of the cluster, and two
/// such setups at once fail with "tuple concurrently updated". Taken by
/// [`lock_citus_setup`]; released when this value is dropped (its session ends).
#[must_use = "the lock is held only while this value lives"]
pub struct CitusSetupLock {
    _session: AsyncPgConnection,
}

impl std::fmt::Debug for CitusSetupLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CitusSetupLock")
    }
}

/// Waits for the test kit's Citus setup lock on the coordinator at `coordinator_url` (any of its
/// databases: the lock lives in its `postgres` database) and holds it until the returned value
/// is dropped. Panics when the coordinator does not answer.
pub async fn lock_citus_setup(coordinator_url: &str) -> CitusSetupLock {
    let mut url = url::Url::parse(coordinator_url)
        .unwrap_or_else(|e| panic!("the coordinator's URL {coordinator_url}: {e}"));
    url.set_path("postgres");
    let mut session = crate::pool::tls::establish(url.as_str())
        .await
        .unwrap_or_else(|e| panic!("the Citus coordinator ({e})"));
    exec(&mut session, &format!("SELECT pg_advisory_lock({LOCK})")).await;
    CitusSetupLock { _session: session }
}

/// A session on the coordinator's `postgres` database holding [`LOCK`] (released with
/// `pg_advisory_unlock`, or when the session ends).
async fn locked() -> AsyncPgConnection {
    let mut lock = connect_superuser("postgres").await;
    exec(&mut lock, &format!("SELECT pg_advisory_lock({LOCK})")).await;
    lock
}

/// Drops `name` on every node, the coordinator (`coordinator_url`, its `postgres` database)
/// first, after closing it to new connections on every node. Each node's copy has a Citus
/// maintenance daemon (a background worker) with connections to the other nodes' copies: when
/// one copy goes, the others' daemons lose those connections, exit, and are started again about
/// five seconds later; a `DROP DATABASE .. WITH (FORCE)` that runs while one comes back waits
/// five seconds for it and fails ("being accessed by other users"). Closed first everywhere, no
/// daemon can come back. Errors are ignored, as a drop on the way out cannot report them.
pub(super) async fn drop_everywhere(coordinator_url: &str, name: &str, workers: &[Node]) {
    let mut admins = Vec::with_capacity(workers.len() + 1);
    if let Ok(c) = crate::pool::tls::establish(coordinator_url).await {
        admins.push(c);
    }
    for node in workers {
        if let Ok(c) = crate::pool::tls::establish(&node_url(node, "postgres")).await {
            admins.push(c);
        }
    }
    for admin in &mut admins {
        let _ = admin.batch_execute(&close_to_connections(name)).await;
    }
    for admin in &mut admins {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

/// Closes `name` to new connections on the coordinator (`coordinator`, its `postgres` database)
/// and every worker, before it is dropped anywhere ([`drop_everywhere`] says why).
pub(super) async fn close_everywhere(
    coordinator: &mut AsyncPgConnection,
    name: &str,
    workers: &[Node],
) {
    exec(coordinator, &close_to_connections(name)).await;
    for node in workers {
        exec(
            &mut connect_node(node, "postgres").await,
            &close_to_connections(name),
        )
        .await;
    }
}

/// `ALTER DATABASE name WITH ALLOW_CONNECTIONS false`, if `name` exists.
fn close_to_connections(name: &str) -> String {
    format!(
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_database WHERE datname = '{name}') THEN \
         ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false; END IF; END $$"
    )
}

/// `template`, a database of the whole cluster: made on every node (what an interrupted build
/// left dropped first), migrated by `prepare` and distributed ([`migrate_and_distribute`]),
/// then closed to connections and marked a template on every node, the coordinator last (whose
/// mark is what "ready" means). Called under the templates' exclusive lock.
pub(super) async fn build_template<F, Fut>(template: &str, workers: &[Node], prepare: F)
where
    F: FnOnce(AsyncPgConnection) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut coordinator = connect_superuser("postgres").await;
    close_everywhere(&mut coordinator, template, workers).await;
    drop_template(&mut coordinator, template).await;
    drop_template_on_workers(template, workers).await;
    exec(&mut coordinator, &format!("CREATE DATABASE {template}")).await;
    spread(template, workers).await;
    migrate_and_distribute(template, prepare).await;
    // Nobody may be connected to a template while it is copied, and Citus keeps sessions of its
    // own in every database it is in: the maintenance daemon of each node (started again by the
    // next connection, hence no connections first), and the coordinator's daemon's connections
    // to the workers (so the coordinator is closed first).
    close(&mut coordinator, template, "ALLOW_CONNECTIONS false").await;
    for node in workers {
        let mut worker = connect_node(node, "postgres").await;
        close(
            &mut worker,
            template,
            "IS_TEMPLATE true ALLOW_CONNECTIONS false",
        )
        .await;
    }
    exec(
        &mut coordinator,
        &format!("ALTER DATABASE {template} WITH IS_TEMPLATE true"),
    )
    .await;
}

/// `ALTER DATABASE template WITH <with>`, then ends every session still in it (Citus's
/// maintenance daemon among them), waiting for each to be gone.
async fn close(admin: &mut AsyncPgConnection, template: &str, with: &str) {
    exec(admin, &format!("ALTER DATABASE {template} WITH {with}")).await;
    exec(
        admin,
        &format!(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
             WHERE datname = '{template}' AND pid <> pg_backend_pid()"
        ),
    )
    .await;
}

/// Drops `template` on the node `admin` is connected to (its `postgres` database), if it is
/// there: a template must be unmarked before it can be dropped.
pub(super) async fn drop_template(admin: &mut AsyncPgConnection, template: &str) {
    exec(
        admin,
        &format!(
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_database WHERE datname = '{template}') THEN \
             ALTER DATABASE {template} WITH IS_TEMPLATE false; END IF; END $$"
        ),
    )
    .await;
    exec(
        admin,
        &format!("DROP DATABASE IF EXISTS {template} WITH (FORCE)"),
    )
    .await;
}

/// Drops `template` on every worker (the coordinator's is dropped by the caller).
pub(super) async fn drop_template_on_workers(template: &str, workers: &[Node]) {
    for node in workers {
        drop_template(&mut connect_node(node, "postgres").await, template).await;
    }
}

/// `name` on every worker, a copy of `template` there (after the coordinator made its copy):
/// no extension to create and no node to register, the copies hold them.
pub(super) async fn copy_to_workers(name: &str, template: &str, workers: &[Node]) {
    for node in workers {
        connect_node(node, "postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "copying {template} to {name} on {}:{}: {e}",
                    node.host, node.port
                )
            });
    }
}

/// Migrates `name` with `prepare` and applies `tenantry citus-plan`'s script to it, as printed
/// (one statement at a time, as `psql` sends it), under the cluster's lock.
pub(super) async fn migrate_and_distribute<F, Fut>(name: &str, prepare: F)
where
    F: FnOnce(AsyncPgConnection) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lock = locked().await;
    prepare(connect_superuser(name).await).await;
    let mut conn = connect_superuser(name).await;
    let report = crate::citus::check(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("tenantry's Citus check of {name}: {e}"));
    assert!(
        report.is_ok(),
        "the test schema is not ready for Citus (`tenantry doctor --citus`): {:#?}",
        report.findings
    );
    let script = report.script(APP_ROLE);
    // Four shards per table instead of Citus's 32: a test's few rows need no more, and placing
    // 32 shards of every table on every test database is most of its setup's time. Two per
    // worker still puts tenants on both. A session setting: the script stays as printed.
    exec(&mut conn, "SET citus.shard_count = 4").await;
    for statement in script.lines().filter(|l| !l.starts_with("--")) {
        if let Err(e) = conn.batch_execute(statement).await {
            panic!("tenantry citus-plan's script on {name}: {statement}: {e}\n\n{script}");
        }
    }
    // One statement per message: Citus forwards a statement's whole message to the workers.
    for statement in ALTERNATE_WORKERS {
        exec(&mut conn, statement).await;
    }
    exec(&mut lock, &format!("SELECT pg_advisory_unlock({LOCK})")).await;
}

/// New tenants' ids, when none is given, alternate between the workers (the first tenant a test
/// makes on one, the second on the other, ..), so that every test has rows on every worker: a
/// tenant id whose shard is on the next worker in turn, drawn at random until one is.
const ALTERNATE_WORKERS: [&str; 3] = [
    "CREATE SEQUENCE tenantry_test_tenant_turn",
    r#"CREATE FUNCTION tenantry_test_tenant_id() RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    workers bigint := (SELECT count(*) FROM pg_dist_node
                       WHERE groupid <> 0 AND isactive AND noderole = 'primary');
    turn bigint := nextval('tenantry_test_tenant_turn') % workers;
    sharded regclass := (SELECT logicalrelid FROM pg_dist_partition WHERE partmethod = 'h'
                         ORDER BY colocationid, logicalrelid LIMIT 1);
    id uuid;
BEGIN
    LOOP
        id := gen_random_uuid();
        IF sharded IS NULL OR (
            SELECT count(*) FROM pg_dist_node w, pg_dist_shard_placement p
            WHERE p.shardid = get_shard_id_for_distribution_column(sharded, id)
              AND w.groupid <> 0 AND w.isactive AND w.noderole = 'primary'
              AND (w.nodename, w.nodeport) < (p.nodename, p.nodeport)) = turn THEN
            RETURN id;
        END IF;
    END LOOP;
END $$"#,
    concat!(
        "ALTER TABLE ",
        schema_name!(),
        ".tenants ALTER COLUMN id SET DEFAULT tenantry_test_tenant_id()"
    ),
];

async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    conn.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
