//! Hostile SQL: what SQL the app role runs can do against the database layer, written as the
//! attack. The SQL goes in through the public API (raw SQL under a bypass token inside partner and
//! viewer transactions, and a second connection as the app role, the channels the compiler lets
//! through), straight to PostgreSQL and through PgBouncer in transaction mode. Each test asserts
//! that no row of another tenant was read, written or moved, that nothing is left on a pooled
//! connection, and that the directory and the tenant keys stay out of reach.

#![allow(
    clippy::disallowed_methods,
    reason = "the attacks are raw SQL on purpose"
)]

use crate::common;

use common::{ctx, viewer_ctx, Route, TestDb};
use diesel::sql_types::{BigInt, Nullable, Text};
use tenantry::prelude::*;
use tenantry::testing::on_both_routes;
use tenantry::{no_tenant_scope, DbError, TenantCtx};
use uuid::Uuid;

const ACME_INVOICES: i64 = 2;
const GLOBEX_INVOICES: i64 = 3;

struct World {
    t: TestDb,
    acme: Uuid,
    globex: Uuid,
}

/// `acme` (2 invoices, a note), `globex` (3 invoices, a note), and a tenant table `notes` with
/// no composite key (nothing but row-level security keeps its rows in their tenant).
async fn world(route: Route, pool_size: usize) -> World {
    let t = TestDb::through(route, pool_size).await;
    let acme = t.tenant("acme").await;
    let globex = t.tenant("globex").await;
    t.seed(acme, "acme-project", ACME_INVOICES as usize).await;
    t.seed(globex, "globex-project", GLOBEX_INVOICES as usize)
        .await;
    let mut admin = t.admin().await;
    common::exec(
        &mut admin,
        &format!(
            "CREATE TABLE notes (id bigserial PRIMARY KEY, \
               tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id), body text NOT NULL);
             SELECT tenantry.tenantry_declare_tenant_table('notes');
             INSERT INTO notes (tenant_id, body) VALUES ('{acme}', 'acme note'), ('{globex}', 'globex note');"
        ),
    )
    .await;
    World { t, acme, globex }
}

#[derive(diesel::QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

#[derive(diesel::QueryableByName, Debug)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs `sql` (one row, a text column `v`) as raw SQL under a bypass token in `conn`'s
/// transaction.
async fn raw<A: tenantry::bounds::Access>(
    t: &TestDb,
    conn: &mut TenantConn<'_, A>,
    sql: &str,
) -> Result<Option<String>, DbError> {
    let job = t.jobs.job("attacker");
    let mut rows: Vec<Row> = conn
        .raw_load(
            no_tenant_scope!(&job, "hostile SQL under test"),
            diesel::sql_query(sql),
        )
        .await?;
    Ok(rows.pop().and_then(|r| r.v))
}

/// Counts with raw SQL (`sql` returns one row with a bigint `n`).
async fn raw_count<A: tenantry::bounds::Access>(
    t: &TestDb,
    conn: &mut TenantConn<'_, A>,
    sql: &str,
) -> Result<i64, DbError> {
    let job = t.jobs.job("attacker");
    let rows: Vec<Count> = conn
        .raw_load(
            no_tenant_scope!(&job, "count under test"),
            diesel::sql_query(sql),
        )
        .await?;
    Ok(rows[0].n)
}

/// The tenant row-level security sees, as the attacker's SQL would read it.
const SEAL: &str = "SELECT current_setting('tenantry.tenant', true) AS v";

/// Rows of each tenant, as the superuser sees them.
async fn rows_of(t: &TestDb, table: &str, tenant: Uuid) -> i64 {
    let mut admin = t.admin().await;
    common::count(
        &mut admin,
        &format!("SELECT count(*) AS n FROM {table} WHERE tenant_id = '{tenant}'"),
    )
    .await
}

/// The forged seal an attacker writes: its own seal with the tenant replaced.
fn forge(seal: &str, from: Uuid, to: Uuid) -> String {
    seal.replacen(&from.to_string(), &to.to_string(), 1)
}

on_both_routes!(
    setting_the_tenant_reaches_no_other_tenant_and_rolls_back,
    switching_the_tenant_inside_one_statement_reads_only_the_own_tenant,
    a_viewer_cannot_switch_tenant_or_turn_read_write,
    raw_sql_cannot_move_a_row_between_its_scan_and_its_check,
    a_session_setting_does_not_reach_the_next_transaction,
    an_advisory_lock_does_not_reach_the_next_transaction,
    a_prepared_statement_does_not_reach_the_next_transaction,
    a_role_does_not_reach_the_next_transaction,
    no_temporary_table_can_shadow_a_tenant_table,
    the_directory_functions_refuse_sql_of_a_tenant_transaction,
    the_tenant_keys_are_out_of_reach,
);

/// `set_config('tenantry.tenant', <globex>..)` (the attacker's own seal with the tenant
/// replaced), then `SELECT .. FROM invoices`, `notes`, `UPDATE` and `DELETE`: no globex row is
/// read or touched, the acme rows vanish from view too (the seal no longer verifies), and the
/// transaction ends with `TenantMoved`, rolled back.
async fn setting_the_tenant_reaches_no_other_tenant_and_rolls_back(route: Route) {
    let w = world(route, 1).await;
    let (acme, globex) = (w.acme, w.globex);
    let result =
        w.t.db
            .tx(&ctx(acme), async |conn| {
                let seal = raw(&w.t, conn, SEAL).await?.expect("a seal");
                assert!(seal.starts_with(&acme.to_string()), "{seal}");
                let forged = forge(&seal, acme, globex);
                raw(
                    &w.t,
                    conn,
                    &format!("SELECT set_config('tenantry.tenant', '{forged}', true) AS v"),
                )
                .await?;
                // The former setting too, for good measure.
                raw(
                    &w.t,
                    conn,
                    &format!("SELECT set_config('app.tenant_id', '{globex}', true) AS v"),
                )
                .await?;
                let invoices = raw_count(&w.t, conn, "SELECT count(*) AS n FROM invoices").await?;
                let notes = raw_count(&w.t, conn, "SELECT count(*) AS n FROM notes").await?;
                let job = w.t.jobs.job("attacker");
                let updated = conn
                    .raw_execute(
                        no_tenant_scope!(&job, "hostile SQL under test"),
                        diesel::sql_query("UPDATE notes SET body = 'owned'"),
                    )
                    .await?;
                let deleted = conn
                    .raw_execute(
                        no_tenant_scope!(&job, "hostile SQL under test"),
                        diesel::sql_query("DELETE FROM invoices"),
                    )
                    .await?;
                let scoped = common::schema::Invoice::scoped(conn)
                    .count()
                    .get_result::<i64>(conn)
                    .await?;
                Ok::<_, DbError>((invoices, notes, updated, deleted, scoped))
            })
            .await;
    assert!(matches!(result, Err(DbError::TenantMoved)), "{result:?}");
    assert_eq!(rows_of(&w.t, "invoices", globex).await, GLOBEX_INVOICES);
    assert_eq!(rows_of(&w.t, "invoices", acme).await, ACME_INVOICES);
    let mut admin = w.t.admin().await;
    assert_eq!(
        common::count(
            &mut admin,
            "SELECT count(*) AS n FROM notes WHERE body = 'owned'"
        )
        .await,
        0
    );

    // What the attacker saw before the transaction was refused: nothing of globex's.
    let seen =
        w.t.db
            .tx(&ctx(acme), async |conn| {
                let seal = raw(&w.t, conn, SEAL).await?.expect("a seal");
                raw(
                    &w.t,
                    conn,
                    &format!(
                        "SELECT set_config('tenantry.tenant', '{}', true) AS v",
                        forge(&seal, acme, globex)
                    ),
                )
                .await?;
                let n = raw_count(&w.t, conn, "SELECT count(*) AS n FROM invoices").await?;
                let verified = conn.verified_tenant().await?;
                Err::<(), _>(DbError::Config(format!(
                    "saw {n} invoices, verified {verified:?}"
                )))
            })
            .await
            .unwrap_err();
    assert_eq!(seen.to_string(), "saw 0 invoices, verified None");
}

/// One statement: `(tenant_id = acme) AND (set_config(<globex>) IS NOT NULL) OR (number IS NOT
/// NULL)`, the form that returned another tenant's rows when the policy read a setting. The policy
/// is decided once, before the statement's own conditions: acme's rows only. The moved seal then
/// fails the transaction's assertion.
async fn switching_the_tenant_inside_one_statement_reads_only_the_own_tenant(route: Route) {
    let w = world(route, 2).await;
    let (acme, globex) = (w.acme, w.globex);
    let counted = std::sync::Mutex::new(None);
    let result =
        w.t.db
            .tx(&ctx(acme), async |conn| {
                let seal = raw(&w.t, conn, SEAL).await?.expect("a seal");
                let forged = forge(&seal, acme, globex);
                let sql = format!(
                    "SELECT count(*) AS n, count(DISTINCT tenant_id) AS tenants, \
                            bool_and(tenant_id = '{acme}') AS own \
                     FROM invoices WHERE (tenant_id = '{acme}') \
                       AND (set_config('tenantry.tenant', '{forged}', true) IS NOT NULL) \
                       OR (number IS NOT NULL)"
                );
                let n = raw_count(&w.t, conn, &sql).await?;
                *counted.lock().unwrap() = Some(n);
                Ok::<_, DbError>(())
            })
            .await;
    assert_eq!(*counted.lock().unwrap(), Some(ACME_INVOICES));
    assert!(matches!(result, Err(DbError::TenantMoved)), "{result:?}");
}

/// The victim tenant of the viewer's attack, with an id a literal fragment can name.
const VICTIM: &str = "00000000-0000-4000-8000-00000000beef";

/// A viewer's transaction is `READ ONLY` and its raw SQL cannot run at all (the audit row of a
/// raw statement cannot be written in it), so the viewer's attack is a literal `sql!` fragment in
/// its scoped query: it can neither turn the transaction read-write nor switch it to a tenant it
/// names.
async fn a_viewer_cannot_switch_tenant_or_turn_read_write(route: Route) {
    use common::schema::Invoice;
    let w = world(route, 1).await;
    let mut admin = w.t.admin().await;
    common::exec(
        &mut admin,
        &format!(
            "INSERT INTO tenantry.tenants (id, slug, name) VALUES ('{VICTIM}', 'victim', 'Victim')"
        ),
    )
    .await;
    common::seed(&mut admin, VICTIM.parse().unwrap(), "victim-project", 4).await;
    let viewer: TenantCtx<'static, tenantry::ReadOnly> = viewer_ctx(w.acme);

    let turned =
        w.t.db
            .tx(&viewer, async |conn| {
                Invoice::scoped(conn)
                    .filter(tenantry::sql!(
                        "set_config('transaction_read_only', 'off', true) IS NOT NULL"
                    ))
                    .count()
                    .get_result::<i64>(conn)
                    .await
                    .map_err(DbError::from)
            })
            .await
            .unwrap_err();
    assert!(
        turned.to_string().contains("read-write"),
        "the server refuses: {turned}"
    );

    let seen = std::sync::Mutex::new(None);
    let result =
        w.t.db
            .tx(&viewer, async |conn| {
                let switched = Invoice::scoped(conn)
                    .filter(tenantry::sql!(
                        "set_config('tenantry.tenant', overlay(current_setting('tenantry.tenant') \
                         placing '00000000-0000-4000-8000-00000000beef' from 1 for 36), true) \
                         IS NOT NULL"
                    ))
                    .count()
                    .get_result::<i64>(conn)
                    .await?;
                let after = Invoice::scoped(conn)
                    .count()
                    .get_result::<i64>(conn)
                    .await?;
                *seen.lock().unwrap() = Some((switched, after, conn.verified_tenant().await?));
                Ok::<_, DbError>(())
            })
            .await;
    // The statement that switched saw its own tenant (the policy was decided first); after it,
    // no tenant at all; and the transaction was refused.
    assert_eq!(*seen.lock().unwrap(), Some((ACME_INVOICES, 0, None)));
    assert!(matches!(result, Err(DbError::TenantMoved)), "{result:?}");
}

/// `UPDATE notes SET tenant_id = globex, body = set_config(<globex seal>)`: the new row is checked
/// after the `SET` ran, against the seal as it then is. A forged seal verifies nowhere, so the
/// check fails and the row stays in acme (`notes` has no composite key to stop it otherwise).
async fn raw_sql_cannot_move_a_row_between_its_scan_and_its_check(route: Route) {
    let w = world(route, 1).await;
    let (acme, globex) = (w.acme, w.globex);
    let moved =
        w.t.db
            .tx(&ctx(acme), async |conn| {
                let seal = raw(&w.t, conn, SEAL).await?.expect("a seal");
                let forged = forge(&seal, acme, globex);
                let job = w.t.jobs.job("attacker");
                conn.raw_execute(
                    no_tenant_scope!(&job, "hostile SQL under test"),
                    diesel::sql_query(format!(
                        "UPDATE notes SET tenant_id = '{globex}', \
                         body = body || set_config('tenantry.tenant', '{forged}', true)"
                    )),
                )
                .await
            })
            .await;
    let e = moved.unwrap_err();
    assert!(e.to_string().contains("row-level security"), "{e}");
    assert_eq!(rows_of(&w.t, "notes", acme).await, 1);
    assert_eq!(rows_of(&w.t, "notes", globex).await, 1);
}

/// What a raw statement leaves in the session, checked in the next transaction of a one
/// connection pool: straight to PostgreSQL the session itself is gone (a new backend); through
/// PgBouncer, whose server connection outlives ours (one server connection here, so the next
/// transaction gets the very same session), it was reset before the transaction ended.
async fn leftover(route: Route, plant: &str, probe: &str, clean: &str) {
    let w = world(Route::Direct, 1).await;
    let acme = w.acme;
    let bouncer;
    let db = match route {
        Route::Direct => w.t.db.clone(),
        Route::PgBouncer => {
            bouncer = tenantry::testing::PgBouncer::start_own(&w.t.name, 1).await;
            let database = tenantry::testing::PgBouncer::OWN_DATABASE;
            let mut config = tenantry::DbConfig::new(
                bouncer.url(database, "tenantry_app"),
                Some(bouncer.url(database, "tenantry_bypass")),
            );
            config.pooler = tenantry::pooler::Pooler::Transaction;
            config.max_connections = 1;
            tenantry::Db::connect(config)
                .await
                .expect("pools through PgBouncer")
        }
    };
    let pid_sql = "SELECT pg_backend_pid()::text AS v";
    let before = db
        .tx(&ctx(acme), async |conn| {
            raw(&w.t, conn, plant).await?;
            // The state is there until the transaction ends.
            let seen = raw(&w.t, conn, probe).await?;
            assert_ne!(seen.as_deref(), Some(clean), "{plant} took effect");
            raw(&w.t, conn, pid_sql).await
        })
        .await
        .expect("the planting transaction");
    let (after, pid) = db
        .tx(&ctx(acme), async |conn| {
            Ok::<_, DbError>((
                raw(&w.t, conn, probe).await?,
                raw(&w.t, conn, pid_sql).await?,
            ))
        })
        .await
        .expect("the next transaction");
    assert_eq!(after.as_deref(), Some(clean), "{plant}: {probe}");
    match route {
        Route::Direct => assert_ne!(pid, before, "the session that ran raw SQL was closed"),
        Route::PgBouncer => assert_eq!(pid, before, "the same server session, reset"),
    }
}

async fn a_session_setting_does_not_reach_the_next_transaction(route: Route) {
    leftover(
        route,
        "SELECT set_config('attacker.note', 'planted', false) AS v",
        "SELECT coalesce(current_setting('attacker.note', true), '') AS v",
        "",
    )
    .await;
}

async fn an_advisory_lock_does_not_reach_the_next_transaction(route: Route) {
    leftover(
        route,
        "SELECT 'locked' AS v FROM (SELECT pg_advisory_lock(424242)) l",
        "SELECT count(*)::text AS v FROM pg_locks \
         WHERE locktype = 'advisory' AND objid = 424242 AND pid = pg_backend_pid()",
        "0",
    )
    .await;
}

async fn a_prepared_statement_does_not_reach_the_next_transaction(route: Route) {
    leftover(
        route,
        "PREPARE attacker_stmt AS SELECT 1",
        "SELECT count(*)::text AS v FROM pg_prepared_statements WHERE name = 'attacker_stmt'",
        "0",
    )
    .await;
}

async fn a_role_does_not_reach_the_next_transaction(route: Route) {
    leftover(
        route,
        "SELECT set_config('role', 'tenantry_app', false) AS v",
        "SELECT current_setting('role') AS v",
        "none",
    )
    .await;
}

/// `CREATE TEMP TABLE invoices (..)` would shadow the real table, without row-level security, for
/// every later transaction of the pooled session: the app role may create no temporary object.
async fn no_temporary_table_can_shadow_a_tenant_table(route: Route) {
    let w = world(route, 1).await;
    let e =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                let job = w.t.jobs.job("attacker");
                conn.raw_execute(
                    no_tenant_scope!(&job, "hostile SQL under test"),
                    diesel::sql_query("CREATE TEMP TABLE invoices (LIKE public.invoices)"),
                )
                .await
            })
            .await
            .unwrap_err();
    assert!(
        e.to_string()
            .contains("permission denied to create temporary tables"),
        "{e}"
    );
}

/// `tenantry_principal`, `tenantry_owner_tenant` and `tenantry_record_sub` answered any SQL of the
/// app role: every user's id, Owner flag and memberships from an email, any tenant's id from an
/// Owner's, and a write to any user's row. Only the directory role may call them now.
async fn the_directory_functions_refuse_sql_of_a_tenant_transaction(route: Route) {
    let w = world(route, 1).await;
    for sql in [
        "SELECT user_id::text AS v FROM tenantry.tenantry_principal('partner@acme.test')",
        "SELECT user_id::text AS v FROM tenantry.tenantry_principal('partner@acme.test', 'person')",
        "SELECT id::text AS v FROM tenantry.tenantry_owner_tenant(gen_random_uuid(), NULL, 'globex')",
        "SELECT tenantry.tenantry_record_sub(gen_random_uuid(), 'sub')::text AS v",
    ] {
        let e =
            w.t.db
                .tx(&ctx(w.acme), async |conn| raw(&w.t, conn, sql).await)
                .await
                .unwrap_err();
        assert!(
            e.to_string().contains("permission denied for function"),
            "{sql}: {e}"
        );
    }
}

/// The key that signs entries: neither its table, nor the functions that read it, nor the entry
/// function's source.
async fn the_tenant_keys_are_out_of_reach(route: Route) {
    let w = world(route, 1).await;
    for (sql, refusal) in [
        (
            "SELECT encode(key, 'hex') AS v FROM tenantry.tenantry_tenant_keys",
            "permission denied for table",
        ),
        (
            "SELECT encode(key, 'hex') AS v FROM tenantry.tenantry_tenant_keys()",
            "permission denied for function",
        ),
        (
            "SELECT encode(tenantry.tenantry_tenant_key_ipad(0), 'hex') AS v",
            "permission denied for function",
        ),
    ] {
        let e =
            w.t.db
                .tx(&ctx(w.acme), async |conn| raw(&w.t, conn, sql).await)
                .await
                .unwrap_err();
        assert!(e.to_string().contains(refusal), "{sql}: {e}");
    }
    // The sources the app role can read hold no key.
    let mut admin = w.t.admin().await;
    let key: String = {
        #[derive(diesel::QueryableByName)]
        struct K {
            #[diesel(sql_type = Text)]
            k: String,
        }
        diesel_async::RunQueryDsl::get_result::<K>(
            diesel::sql_query("SELECT encode(key, 'hex') AS k FROM tenantry.tenantry_tenant_keys"),
            &mut admin,
        )
        .await
        .expect("the key")
        .k
    };
    let sources =
        w.t.db
            .tx(&ctx(w.acme), async |conn| {
                raw(
                &w.t,
                conn,
                "SELECT string_agg(prosrc, ' ') AS v FROM pg_proc WHERE proname LIKE 'tenantry_%'",
            )
            .await
            })
            .await
            .expect("pg_proc is readable")
            .expect("sources");
    assert!(sources.contains("tenantry_enter") || sources.contains("set_config"));
    assert!(!sources.contains(&key), "a key in a function's source");
}

/// A second connection as the app role, outside tenantry: without the key, no tenant can be
/// entered. A made-up proof, the proof of another tenant, an old seal copied in: nothing.
#[tokio::test]
async fn a_raw_connection_cannot_enter_a_tenant_without_the_key() {
    let w = world(Route::Direct, 1).await;
    let (acme, globex) = (w.acme, w.globex);
    let mut app = w.t.app_conn().await;
    for (sql, refusal) in [
        (
            format!(
                "SELECT tenantry.tenantry_enter('{globex}', false, extract(epoch from now())::bigint, 1, \
                 sha256('guess'::bytea))::text AS v"
            ),
            "the proof does not verify",
        ),
        (
            format!(
                "SELECT tenantry.tenantry_enter('{globex}', false, extract(epoch from now())::bigint, 999, \
                 sha256('guess'::bytea))::text AS v"
            ),
            "unknown or expired tenant key",
        ),
    ] {
        let e = common::try_text(&mut app, &sql).await.unwrap_err();
        assert!(e.to_string().contains(refusal), "{sql}: {e}");
    }

    // A seal read in a globex transaction, written into another transaction (of the same
    // session, or another one): it names this backend and that transaction's start, so it
    // verifies nowhere else.
    w.t.begin_tenant(&mut app, globex)
        .await
        .expect("enter globex");
    let seal = common::try_text(&mut app, SEAL)
        .await
        .unwrap()
        .expect("a seal");
    assert_eq!(
        common::count(&mut app, "SELECT count(*) AS n FROM invoices").await,
        GLOBEX_INVOICES
    );
    common::exec(&mut app, "COMMIT").await;
    for conn in [&mut app, &mut w.t.app_conn().await] {
        common::exec(conn, "BEGIN").await;
        common::exec(
            conn,
            &format!("SELECT set_config('tenantry.tenant', '{seal}', true)"),
        )
        .await;
        assert_eq!(
            common::count(conn, "SELECT count(*) AS n FROM invoices").await,
            0,
            "a replayed seal"
        );
        common::exec(conn, "ROLLBACK").await;
    }
    // Left in the session (`set_config(.., false)`), it does not verify after its transaction.
    w.t.begin_tenant(&mut app, acme).await.expect("enter acme");
    let seal = common::try_text(&mut app, SEAL)
        .await
        .unwrap()
        .expect("a seal");
    common::exec(
        &mut app,
        &format!("SELECT set_config('tenantry.tenant', '{seal}', false)"),
    )
    .await;
    common::exec(&mut app, "COMMIT").await;
    assert_eq!(
        common::count(&mut app, "SELECT count(*) AS n FROM invoices").await,
        0,
        "a seal kept in the session"
    );
}

/// A key rotated with no grace (after a suspected leak): entries signed with the old key are
/// refused at once (`DbError::Seal`, which answers 503), and the instance signs with the new key
/// once it has read it.
#[tokio::test]
async fn a_key_rotated_without_grace_refuses_the_old_one_at_once() {
    use common::schema::Invoice;
    let w = world(Route::Direct, 1).await;
    let count = async || {
        w.t.db
            .query(&ctx(w.acme), |conn| {
                Invoice::scoped(conn).count().get_result::<i64>(conn)
            })
            .await
    };
    assert_eq!(count().await.expect("before"), ACME_INVOICES);
    common::exec(
        &mut w.t.admin().await,
        "SELECT tenantry.tenantry_rotate_tenant_key('0 seconds')",
    )
    .await;
    let refused = count().await.unwrap_err();
    assert!(
        matches!(&refused, DbError::Seal(m) if m.contains("unknown or expired tenant key")),
        "{refused:?}"
    );
    assert!(refused.is_unavailable(), "answered 503");
    w.t.db.reload_tenant_keys().await.expect("the new key");
    assert_eq!(count().await.expect("after"), ACME_INVOICES);
}
