//! (g) The principal lookup alone: `load_principal` with and without the principal cache, the
//! same SQL through `sql_query`, and the same query written with Diesel's DSL on a plain pool.

use std::time::{Duration, Instant};

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use tenantry::auth::Identity;
use tenantry::identity::load_principal;
use tenantry::Db;

use crate::measure::{per_op, secs, server_cpu, us};
use crate::stats::{process_cpu, Stats, Watcher};
use crate::{ROUNDS, SERVER_THREADS, VIEWER};

pub type PgPool = Pool<AsyncPgConnection>;

/// The framework's directory tables, as far as the lookup reads them.
mod directory {
    diesel::table! {
        users (id) {
            id -> Uuid,
            email -> Text,
            is_owner -> Bool,
            cf_sub -> Nullable<Text>,
        }
    }
    diesel::table! {
        memberships (user_id, tenant_id) {
            user_id -> Uuid,
            tenant_id -> Uuid,
            role -> Text,
        }
    }
    diesel::table! {
        tenants (id) {
            id -> Uuid,
            slug -> Text,
            name -> Text,
        }
    }
    diesel::allow_tables_to_appear_in_same_query!(users, memberships, tenants);

    diesel::define_sql_function! {
        #[sql_name = "lower"]
        fn lower_text(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
    }
}

pub type LookupRow = (
    uuid::Uuid,
    String,
    bool,
    Option<String>,
    Option<uuid::Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// `principal.rs`'s lookup written with the query DSL: diesel caches its prepared statement per
/// connection, so after the first call it is one Bind/Execute/Sync exchange.
pub async fn lookup_dsl(conn: &mut AsyncPgConnection, email: &str) -> Vec<LookupRow> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use directory::{lower_text, memberships, tenants, users};
    users::table
        .left_join(memberships::table.on(memberships::user_id.eq(users::id)))
        .left_join(tenants::table.on(tenants::id.eq(memberships::tenant_id)))
        .filter(lower_text(users::email).eq(lower_text(email)))
        .order(tenants::slug.nullable())
        .select((
            users::id,
            users::email,
            users::is_owner,
            users::cf_sub,
            memberships::tenant_id.nullable(),
            memberships::role.nullable(),
            tenants::slug.nullable(),
            tenants::name.nullable(),
        ))
        .load::<LookupRow>(conn)
        .await
        .expect("lookup")
}

/// `principal.rs`'s `LOOKUP`, verbatim, through `diesel::sql_query` (never cached).
#[allow(
    clippy::disallowed_methods,
    reason = "the reference lookup without tenantry: the same SQL through sql_query"
)]
pub async fn lookup_sql(conn: &mut AsyncPgConnection, email: &str) -> usize {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        #[allow(dead_code)]
        id: uuid::Uuid,
    }
    diesel::sql_query(
        "SELECT u.id, u.email, u.is_owner, u.cf_sub, m.tenant_id, m.role, t.slug, t.name \
         FROM tenantry.users u \
         LEFT JOIN tenantry.memberships m ON m.user_id = u.id \
         LEFT JOIN tenantry.tenants t ON t.id = m.tenant_id \
         WHERE lower(u.email) = lower($1) \
         ORDER BY t.slug",
    )
    .bind::<diesel::sql_types::Text, _>(email)
    .load::<Id>(conn)
    .await
    .expect("lookup")
    .len()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lookup {
    /// `tenantry::identity::load_principal` on a `Db` with the principal cache (a hit).
    Cached,
    /// `tenantry::identity::load_principal` on a `Db` without the principal cache.
    Tenantry,
    /// The same SQL through `sql_query` on a plain pool.
    SqlQuery,
    /// The same query with the DSL (cached prepared statement) on a plain pool.
    Dsl,
}

impl Lookup {
    pub fn label(self) -> &'static str {
        match self {
            Lookup::Cached => "load_principal, principal cache (hit)",
            Lookup::Tenantry => "load_principal, cache off (cached statement)",
            Lookup::SqlQuery => "same SQL, sql_query on a plain pool",
            Lookup::Dsl => "same query, DSL: cached statement (Bind/Execute)",
        }
    }
}

/// The two `Db`s of the lookups: with and without the principal cache.
pub struct Dbs {
    pub cached: Db,
    pub uncached: Db,
}

pub async fn one_lookup(dbs: &Dbs, pool: &PgPool, identity: &Identity, l: Lookup) {
    let memberships = match l {
        Lookup::Cached => load_principal(&dbs.cached, identity)
            .await
            .expect("principal")
            .memberships()
            .len(),
        Lookup::Tenantry => load_principal(&dbs.uncached, identity)
            .await
            .expect("principal")
            .memberships()
            .len(),
        Lookup::SqlQuery => lookup_sql(&mut pool.get().await.expect("pool"), VIEWER).await,
        Lookup::Dsl => lookup_dsl(&mut pool.get().await.expect("pool"), VIEWER)
            .await
            .len(),
    };
    assert_eq!(memberships, 2);
}

/// The plain lookups on one connection.
pub async fn run_lookup(conn: &mut AsyncPgConnection, l: Lookup) {
    let memberships = match l {
        Lookup::SqlQuery => lookup_sql(conn, VIEWER).await,
        Lookup::Dsl => lookup_dsl(conn, VIEWER).await.len(),
        Lookup::Cached | Lookup::Tenantry => unreachable!("needs a Db"),
    };
    assert_eq!(memberships, 2);
}

pub fn plain_pool(url: &str, size: usize) -> PgPool {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager).max_size(size).build().expect("pool")
}

/// Times the three lookups in rotated rounds (sequential, one-connection pools) and prints (g).
pub async fn time_lookups(db: &Dbs, plain: &PgPool, identity: &Identity, watcher: &Watcher) {
    let lookups = [
        Lookup::Tenantry,
        Lookup::Cached,
        Lookup::SqlQuery,
        Lookup::Dsl,
    ];
    let mut stats: Vec<Stats> = lookups.iter().map(|_| Stats::default()).collect();
    for &l in &lookups {
        for _ in 0..200 {
            one_lookup(db, plain, identity, l).await;
        }
    }
    let round = secs(0.3);
    for r in 0..ROUNDS {
        for i in 0..lookups.len() {
            let j = (i + r) % lookups.len();
            let backends = watcher.backend_pids().await;
            let (a0, c0) = process_cpu(SERVER_THREADS);
            let pg0 = server_cpu(&backends);
            let start = Instant::now();
            let s = &mut stats[j];
            loop {
                let q0 = Instant::now();
                one_lookup(db, plain, identity, lookups[j]).await;
                let q1 = Instant::now();
                s.lat_ns.push((q1 - q0).as_nanos() as u64);
                s.ops += 1;
                if q1 - start >= round {
                    break;
                }
            }
            s.elapsed += start.elapsed();
            let (a1, c1) = process_cpu(SERVER_THREADS);
            s.app_cpu += a1.saturating_sub(a0);
            s.client_cpu += c1.saturating_sub(c0);
            s.pg_cpu += server_cpu(&backends).saturating_sub(pg0);
        }
    }
    println!(
        "\n(g) the principal lookup alone, 1 client, pools of 1, {ROUNDS} rotated rounds of {:.1} s; ratio = ops/s vs load_principal without the cache",
        round.as_secs_f64()
    );
    println!(
        "| {:<50} | {:>7} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} |",
        "variant", "ops/s", "ratio", "p50 µs", "p50 ratio", "p99 µs", "cli CPU", "pg CPU", "ops"
    );
    println!(
        "|{:-<52}|{:->9}|{:->8}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|{:->9}|",
        "", "", "", "", "", "", "", "", ""
    );
    let base = stats[0].ops_per_sec();
    let base_p50 = stats[0].pct(0.5);
    for (l, s) in lookups.iter().zip(stats.iter_mut()) {
        let (p50, p99) = (s.pct(0.5), s.pct(0.99));
        let per = |d: Duration| per_op(d, s.ops);
        println!(
            "| {:<50} | {:>7.0} | {:>6.3} | {:>8} | {:>8.3} | {:>8} | {:>8} | {:>8} | {:>7} |",
            l.label(),
            s.ops_per_sec(),
            s.ops_per_sec() / base,
            us(p50),
            base_p50.as_secs_f64() / p50.as_secs_f64(),
            us(p99),
            per(s.app_cpu + s.client_cpu),
            per(s.pg_cpu),
            s.ops,
        );
    }
}
