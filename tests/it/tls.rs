//! TLS to PostgreSQL: each `sslmode` against a server that accepts TLS only, a wrong CA, a wrong
//! host name, the public roots, a server without TLS, every connection of a `Db` (its pools, the
//! directory listener and a cancel request) asking for TLS first, and PgBouncer with TLS on both
//! sides. The server is the test binary's own (`tls/server.rs`).
#![allow(
    clippy::disallowed_methods,
    reason = "test setup and probes: literal SQL as the superuser"
)]
#![allow(unreachable_pub, dead_code)]

mod server;
mod sniff;

use std::time::{Duration, Instant};

use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenantry::auth::Identity;
use tenantry::identity::load_principal;
use tenantry::pooler::Pooler;
use tenantry::testing::PgBouncer;
use tenantry::{no_tenant_scope, Db, DbConfig, DbError};
use tokio::sync::OnceCell;

const DATABASE: &str = "tenantry_tls";

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// The server's database, migrated once, with tenant `acme` and its partner `ada`.
async fn database() -> &'static server::TlsServer {
    static READY: OnceCell<()> = OnceCell::const_new();
    let s = server::server();
    READY
        .get_or_init(|| async {
            let mut admin = tenantry::tls::establish(&s.url(
                "127.0.0.1",
                "postgres",
                "postgres",
                &s.verify_full(),
            ))
            .await
            .expect("the TLS server");
            admin
                .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
                .await
                .expect("create database");
            let url = s.url("127.0.0.1", "postgres", DATABASE, &s.verify_full());
            tenantry::migrations::migrate_url(&url)
                .await
                .expect("migrations over TLS");
            let mut conn = tenantry::tls::establish(&url).await.expect("connect");
            conn.batch_execute(
                "INSERT INTO tenantry.tenants (slug, name) VALUES ('acme', 'Acme');
                 INSERT INTO tenantry.users (email) VALUES ('ada@example.com');
                 INSERT INTO tenantry.memberships (user_id, tenant_id, role)
                   SELECT u.id, t.id, 'partner' FROM tenantry.users u, tenantry.tenants t",
            )
            .await
            .expect("seed");
        })
        .await;
    s
}

/// Whether `conn`'s session is encrypted, as the server sees it.
async fn encrypted(conn: &mut AsyncPgConnection) -> bool {
    diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result::<Ssl>(conn)
        .await
        .expect("pg_stat_ssl")
        .ssl
}

/// Connects as the superuser to `host` with `params`.
async fn connect(host: &str, params: &str) -> Result<AsyncPgConnection, String> {
    let s = database().await;
    tenantry::tls::establish(&s.url(host, "postgres", DATABASE, params))
        .await
        .map_err(|e| e.to_string())
}

fn refused(outcome: Result<AsyncPgConnection, String>, needle: &str) {
    match outcome {
        Ok(_) => panic!("connected, but {needle:?} was expected"),
        Err(e) => assert!(e.contains(needle), "expected {needle:?} in: {e}"),
    }
}

#[tokio::test]
async fn disable_sends_plain_text_which_a_tls_only_server_refuses() {
    refused(
        connect("127.0.0.1", "sslmode=disable").await,
        "no encryption",
    );
}

#[tokio::test]
async fn prefer_and_require_encrypt_without_checking_the_certificate() {
    for params in ["", "sslmode=prefer", "sslmode=require"] {
        for host in ["127.0.0.1", "127.0.0.2"] {
            let mut conn = connect(host, params)
                .await
                .unwrap_or_else(|e| panic!("{params:?} to {host}: {e}"));
            assert!(encrypted(&mut conn).await, "{params:?} to {host}");
        }
    }
}

#[tokio::test]
async fn verify_ca_checks_the_ca_but_not_the_name() {
    let s = database().await;
    let params = format!("sslmode=verify-ca&sslrootcert={}", s.ca.display());
    for host in ["127.0.0.1", "localhost", "127.0.0.2"] {
        let mut conn = connect(host, &params)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert!(encrypted(&mut conn).await);
    }
}

#[tokio::test]
async fn verify_full_checks_the_ca_and_the_host_name() {
    let s = database().await;
    for host in ["127.0.0.1", "localhost"] {
        let mut conn = connect(host, &s.verify_full())
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert!(encrypted(&mut conn).await);
    }
    // The same server, CA and certificate, reached by an address the certificate does not name.
    refused(
        connect("127.0.0.2", &s.verify_full()).await,
        "does not name the host 127.0.0.2",
    );
}

#[tokio::test]
async fn a_wrong_ca_is_refused_by_every_mode_that_names_one() {
    let s = database().await;
    let other = s.other_ca.display();
    // `require` with a root file checks the CA, as libpq does.
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        refused(
            connect("127.0.0.1", &format!("sslmode={mode}&sslrootcert={other}")).await,
            "is not signed by a CA of sslrootcert",
        );
    }
}

#[tokio::test]
async fn the_public_roots_do_not_trust_a_private_ca() {
    refused(
        connect("localhost", "sslrootcert=system").await,
        "is not signed by a CA of sslrootcert=system",
    );
    refused(
        connect("localhost", "sslmode=require&sslrootcert=system").await,
        "use verify-full",
    );
    refused(
        connect("localhost", "sslmode=verify-full").await,
        "needs sslrootcert",
    );
}

#[tokio::test]
async fn a_server_without_tls_is_refused_by_require_and_spoken_to_in_plain_text_by_prefer() {
    let fake = sniff::NoTlsServer::start().await;
    refused(
        tenantry::tls::establish(&fake.url("sslmode=require"))
            .await
            .map_err(|e| e.to_string()),
        "does not accept TLS connections (sslmode=require)",
    );
    // `prefer` goes on in plain text: the startup message reaches the server, which answers it.
    refused(
        tenantry::tls::establish(&fake.url("sslmode=prefer"))
            .await
            .map_err(|e| e.to_string()),
        "plain text startup received",
    );
}

/// A `Db` whose every URL leads through `proxy` to the TLS server, with `params`.
fn config_through(proxy: &sniff::Sniffer, params: &str) -> DbConfig {
    let url = |role: &str| proxy.url(role, DATABASE, params);
    let mut config = DbConfig::new(url("tenantry_app"), Some(url("tenantry_bypass")));
    config.directory_url = Some(url("tenantry_directory"));
    config.listen_url = Some(url("tenantry_app"));
    // Only the cancel request can end the abandoned statement below.
    config.statement_timeout = Duration::from_secs(60);
    config
}

#[tokio::test]
async fn every_connection_a_db_opens_asks_for_tls_first_cancel_requests_included() {
    let s = database().await;
    let proxy = sniff::Sniffer::start(s.port).await;
    let (db, jobs) = Db::connect_with_jobs(config_through(&proxy, &s.verify_full()))
        .await
        .expect("a Db over TLS");
    // The directory pool and the listener: a principal lookup starts the listener.
    let ada = Identity::User {
        email: "ada@example.com".into(),
        sub: None,
    };
    load_principal(&db, &ada).await.expect("ada");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.principal_cache_status().listening {
        assert!(
            Instant::now() < deadline,
            "the listener did not come up over TLS"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A statement abandoned by its client: tenantry cancels it over a new connection.
    let job = jobs.job("tls-test");
    let sleeping = db.bypass(
        no_tenant_scope!(&job, "an abandoned statement"),
        async |conn| {
            conn.diesel()
                .batch_execute("SELECT pg_sleep(60)")
                .await
                .map_err(DbError::from)
        },
    );
    let before = proxy.connections();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sleeping)
            .await
            .is_err(),
        "pg_sleep(60) cannot finish in 500 ms"
    );
    let mut admin = connect("127.0.0.1", &s.verify_full()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active: Vec<Line> = diesel::sql_query(
            "SELECT query AS line FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'",
        )
        .load(&mut admin)
        .await
        .expect("pg_stat_activity");
        if active.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned statement was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        proxy.connections() > before,
        "the cancel request opened a connection of its own"
    );
    let firsts = proxy.first_packets();
    // app (and its check at start), bypass, directory, listener, cancel.
    assert!(firsts.len() >= 5, "{} connections", firsts.len());
    for (i, first) in firsts.iter().enumerate() {
        assert_eq!(
            first,
            &sniff::SSL_REQUEST,
            "connection {i} began with {first:?}, not an SSLRequest"
        );
    }
}

#[tokio::test]
async fn pgbouncer_with_tls_on_both_sides() {
    let s = database().await;
    let extra = format!(
        "client_tls_sslmode = require\nclient_tls_cert_file = {cert}\nclient_tls_key_file = {key}\n\
         server_tls_sslmode = verify-full\nserver_tls_ca_file = {ca}\n\
         ignore_startup_parameters = extra_float_digits, options",
        cert = s.cert.display(),
        key = s.key.display(),
        ca = s.ca.display(),
    );
    // PgBouncer connects to the TLS server by name: `localhost` is in its certificate.
    let server = format!("postgres://postgres@localhost:{}/postgres", s.port);
    let bouncer = PgBouncer::start_own_to(&server, DATABASE, 2, &extra).await;
    let params = s.verify_full();
    let url = |role: &str| format!("{}?{params}", bouncer.url(PgBouncer::OWN_DATABASE, role));
    let mut config = DbConfig::new(url("tenantry_app"), Some(url("tenantry_bypass")));
    config.directory_url = Some(url("tenantry_directory"));
    config.pooler = Pooler::Transaction;
    let db = Db::connect(config)
        .await
        .expect("a Db through PgBouncer, TLS on both sides");
    let ada = Identity::User {
        email: "ada@example.com".into(),
        sub: None,
    };
    let principal = load_principal(&db, &ada)
        .await
        .expect("ada through the pooler");
    assert_eq!(principal.memberships().len(), 1);
    db.ping()
        .await
        .expect("a tenant transaction through the pooler");
    // PgBouncer itself refuses a client in plain text (client_tls_sslmode = require).
    let plain = tenantry::tls::establish(&format!(
        "{}?sslmode=disable",
        bouncer.url(PgBouncer::OWN_DATABASE, "tenantry_app")
    ))
    .await;
    assert!(plain.is_err(), "PgBouncer accepted a client without TLS");
    // And a client that checks the pooler's certificate against another CA refuses it.
    let wrong = tenantry::tls::establish(&format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        bouncer.url(PgBouncer::OWN_DATABASE, "tenantry_app"),
        s.other_ca.display()
    ))
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(wrong.contains("is not signed by a CA"), "{wrong}");
}
