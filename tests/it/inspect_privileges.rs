//! `inspect` on what the app and bypass roles may do beyond their grants (ownership,
//! memberships, TEMP, CREATE) and on tenantry's `SECURITY DEFINER` functions: one test per
//! weakening, each asserting the finding that names it. Memberships and role attributes are
//! shared by the whole server, so those tests use scratch roles as the app or bypass role.

use crate::common;

use common::TestDb;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenantry::doctor::{Finding, RoleEscalation, RolePower, SearchPathProblem};
use tenantry::testing::ScratchRole;

async fn batch(conn: &mut AsyncPgConnection, sql: &str) {
    conn.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A database as tenantry's migrations leave it (TEMP revoked from PUBLIC, the directory's
/// lookups for the directory role alone).
async fn hardened() -> (TestDb, AsyncPgConnection) {
    let t = TestDb::new().await;
    let admin = t.admin().await;
    (t, admin)
}

/// The findings with `app` as the app role and `bypass` as the bypass role.
async fn findings(conn: &mut AsyncPgConnection, app: &str, bypass: &str) -> Vec<Finding> {
    tenantry::doctor::inspect_roles(conn, app, bypass)
        .await
        .expect("inspect runs")
        .findings
}

/// The findings with tenantry's roles after `sql` ran on a properly set up database.
async fn findings_after(sql: &str) -> (TestDb, Vec<Finding>) {
    let (t, mut admin) = hardened().await;
    batch(&mut admin, sql).await;
    let found = findings(&mut admin, "tenantry_app", "tenantry_bypass").await;
    (t, found)
}

#[tokio::test]
async fn a_properly_set_up_database_has_no_findings() {
    let (t, mut admin) = hardened().await;
    let report = tenantry::doctor::inspect(&mut admin, "tenantry_app")
        .await
        .unwrap();
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.roles, ["tenantry_app", "tenantry_bypass"]);
    // Nor with a scratch role of its own as the app role.
    let app = ScratchRole::create("tenantry_r", &t.name, "LOGIN NOINHERIT").await;
    assert_eq!(
        findings(&mut admin, app.name(), "tenantry_bypass").await,
        vec![]
    );
}

#[tokio::test]
async fn the_app_role_owning_a_table_is_reported() {
    let (_t, found) = findings_after("ALTER TABLE invoices OWNER TO tenantry_app").await;
    assert_eq!(
        found,
        vec![Finding::RoleOwns {
            role: "tenantry_app".into(),
            kind: "table".into(),
            object: "public.invoices".into()
        }]
    );
    assert!(
        found[0]
            .to_string()
            .contains("ALTER TABLE public.invoices OWNER TO"),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn the_bypass_role_owning_a_schema_is_reported() {
    let (_t, found) = findings_after("CREATE SCHEMA reports AUTHORIZATION tenantry_bypass").await;
    assert_eq!(
        found,
        vec![
            Finding::RoleOwns {
                role: "tenantry_bypass".into(),
                kind: "schema".into(),
                object: "reports".into()
            },
            Finding::CreateAllowed {
                role: "tenantry_bypass".into(),
                schema: "reports".into(),
                via_public: false
            }
        ]
    );
}

#[tokio::test]
async fn the_app_role_owning_a_function_is_reported() {
    let (_t, found) = findings_after(
        "CREATE FUNCTION app_helper() RETURNS int LANGUAGE sql AS 'SELECT 1';
         ALTER FUNCTION app_helper() OWNER TO tenantry_app",
    )
    .await;
    assert_eq!(
        found,
        vec![Finding::RoleOwns {
            role: "tenantry_app".into(),
            kind: "function".into(),
            object: "app_helper()".into()
        }]
    );
}

/// A scratch app role and a scratch owner of `invoices`, on a properly set up database.
async fn app_and_owner() -> (TestDb, AsyncPgConnection, ScratchRole, ScratchRole) {
    let (t, mut admin) = hardened().await;
    let app = ScratchRole::create("tenantry_r", &t.name, "LOGIN NOINHERIT").await;
    let owner = ScratchRole::create("tenantry_g", &t.name, "NOLOGIN").await;
    batch(
        &mut admin,
        &format!("ALTER TABLE invoices OWNER TO {}", owner.name()),
    )
    .await;
    (t, admin, app, owner)
}

#[tokio::test]
async fn the_app_role_as_a_member_of_a_table_owner_is_reported() {
    let (_t, mut admin, app, owner) = app_and_owner().await;
    batch(
        &mut admin,
        &format!("GRANT {} TO {}", owner.name(), app.name()),
    )
    .await;
    assert_eq!(
        findings(&mut admin, app.name(), "tenantry_bypass").await,
        vec![Finding::RoleEscalates {
            escalation: RoleEscalation {
                role: app.name().into(),
                via: vec![owner.name().into()],
                power: RolePower::OwnsTable("public.invoices".into()),
            }
        }]
    );
}

#[tokio::test]
async fn the_app_role_as_a_member_of_a_table_owner_through_another_role_is_reported() {
    let (t, mut admin, app, owner) = app_and_owner().await;
    let middle = ScratchRole::create("tenantry_g", &t.name, "NOLOGIN").await;
    batch(
        &mut admin,
        &format!(
            "GRANT {o} TO {m}; GRANT {m} TO {a}",
            o = owner.name(),
            m = middle.name(),
            a = app.name()
        ),
    )
    .await;
    let found = findings(&mut admin, app.name(), "tenantry_bypass").await;
    assert_eq!(
        found,
        vec![Finding::RoleEscalates {
            escalation: RoleEscalation {
                role: app.name().into(),
                via: vec![middle.name().into(), owner.name().into()],
                power: RolePower::OwnsTable("public.invoices".into()),
            }
        }]
    );
    assert!(
        found[0]
            .to_string()
            .contains(&format!("REVOKE {} FROM {}", middle.name(), app.name())),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn the_app_role_as_a_member_of_the_bypass_role_is_reported() {
    let (t, mut admin) = hardened().await;
    let app = ScratchRole::create("tenantry_r", &t.name, "LOGIN NOINHERIT").await;
    batch(
        &mut admin,
        &format!("GRANT tenantry_bypass TO {}", app.name()),
    )
    .await;
    assert_eq!(
        findings(&mut admin, app.name(), "tenantry_bypass").await,
        vec![Finding::RoleEscalates {
            escalation: RoleEscalation {
                role: app.name().into(),
                via: vec!["tenantry_bypass".into()],
                power: RolePower::BypassRls,
            }
        }]
    );
}

#[tokio::test]
async fn the_app_role_with_createrole_is_reported() {
    let (t, mut admin) = hardened().await;
    let app = ScratchRole::create("tenantry_r", &t.name, "LOGIN CREATEROLE").await;
    assert_eq!(
        findings(&mut admin, app.name(), "tenantry_bypass").await,
        vec![Finding::RoleEscalates {
            escalation: RoleEscalation {
                role: app.name().into(),
                via: vec![],
                power: RolePower::CreateRole,
            }
        }]
    );
}

#[tokio::test]
async fn the_bypass_role_as_a_member_of_a_table_owner_is_reported() {
    let (t, mut admin, _app, owner) = app_and_owner().await;
    let bypass = ScratchRole::create("tenantry_r", &t.name, "LOGIN BYPASSRLS").await;
    batch(
        &mut admin,
        &format!("GRANT {} TO {}", owner.name(), bypass.name()),
    )
    .await;
    // Its own BYPASSRLS is what a bypass role is for; the owner's powers are not.
    assert_eq!(
        findings(&mut admin, "tenantry_app", bypass.name()).await,
        vec![Finding::RoleEscalates {
            escalation: RoleEscalation {
                role: bypass.name().into(),
                via: vec![owner.name().into()],
                power: RolePower::OwnsTable("public.invoices".into()),
            }
        }]
    );
}

#[tokio::test]
async fn temp_granted_to_the_app_role_is_reported() {
    let (t, mut admin) = hardened().await;
    batch(
        &mut admin,
        &format!("GRANT TEMPORARY ON DATABASE {} TO tenantry_app", t.name),
    )
    .await;
    assert_eq!(
        findings(&mut admin, "tenantry_app", "tenantry_bypass").await,
        vec![Finding::TempAllowed {
            role: "tenantry_app".into(),
            database: t.name.clone(),
            via_public: false
        }]
    );
}

#[tokio::test]
async fn temp_granted_to_public_is_reported_for_both_roles() {
    let (t, mut admin) = hardened().await;
    batch(
        &mut admin,
        &format!("GRANT TEMPORARY ON DATABASE {} TO PUBLIC", t.name),
    )
    .await;
    let found = findings(&mut admin, "tenantry_app", "tenantry_bypass").await;
    let temp = |role: &str| Finding::TempAllowed {
        role: role.into(),
        database: t.name.clone(),
        via_public: true,
    };
    assert_eq!(found, vec![temp("tenantry_app"), temp("tenantry_bypass")]);
    assert!(
        found[0].to_string().contains(&format!(
            "REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC",
            t.name
        )),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn create_on_a_schema_for_the_app_role_is_reported() {
    let (_t, found) = findings_after(
        "CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO tenantry_app",
    )
    .await;
    assert_eq!(
        found,
        vec![Finding::CreateAllowed {
            role: "tenantry_app".into(),
            schema: "scratch".into(),
            via_public: false
        }]
    );
}

/// PostgreSQL before 15 granted it by default. tenantry's `SECURITY DEFINER` functions search
/// their own schema, `tenantry`, before `pg_temp`, never `public`: only the roles are reported.
#[tokio::test]
async fn create_on_public_for_public_is_reported_and_tenantrys_functions_do_not_search_it() {
    let (_t, found) = findings_after("GRANT CREATE ON SCHEMA public TO PUBLIC").await;
    let create = |role: &str| Finding::CreateAllowed {
        role: role.into(),
        schema: "public".into(),
        via_public: true,
    };
    assert_eq!(found, [create("tenantry_app"), create("tenantry_bypass")]);
}

/// CREATE on tenantry's own schema: each of tenantry's `SECURITY DEFINER` functions searches it
/// before `pg_temp`, so each is reported too.
#[tokio::test]
async fn create_on_tenantrys_schema_is_reported_with_the_functions_that_search_it() {
    let (_t, found) = findings_after("GRANT CREATE ON SCHEMA tenantry TO PUBLIC").await;
    let create = |role: &str| Finding::CreateAllowed {
        role: role.into(),
        schema: "tenantry".into(),
        via_public: true,
    };
    let searches = |function: &str| Finding::DefinerSearchPath {
        function: function.into(),
        search_path: Some("tenantry, pg_temp".into()),
        problem: SearchPathProblem::Writable {
            schema: "tenantry".into(),
        },
    };
    assert_eq!(
        found[..2],
        [create("tenantry_app"), create("tenantry_bypass")]
    );
    // Every definer function of tenantry's that pins `tenantry, pg_temp` (the directory's, the
    // seal's, the audit log's), each named, and nothing else.
    let rest = &found[2..];
    for function in [
        "tenantry.tenantry_owner_tenant(uuid,uuid,text)",
        "tenantry.tenantry_principal(text)",
        "tenantry.tenantry_principal(text,text)",
        "tenantry.tenantry_record_sub(uuid,text)",
        "tenantry.tenantry_tenant_keys()",
        "tenantry.tenantry_audit_write(uuid,text,text,text,uuid,text,text)",
    ] {
        assert!(rest.contains(&searches(function)), "{function} in {rest:?}");
    }
    assert!(
        rest.iter().all(|f| matches!(
            f,
            Finding::DefinerSearchPath { problem: SearchPathProblem::Writable { schema }, .. }
                if schema == "tenantry"
        )),
        "{rest:?}"
    );
}

#[tokio::test]
async fn execute_for_public_on_a_directory_function_is_reported() {
    let (_t, found) = findings_after(
        "GRANT EXECUTE ON FUNCTION tenantry.tenantry_principal(text, text) TO PUBLIC",
    )
    .await;
    assert_eq!(
        found,
        vec![Finding::DefinerExecutable {
            function: "tenantry.tenantry_principal(text,text)".into(),
            grantee: "PUBLIC".into()
        }]
    );
}

#[tokio::test]
async fn execute_for_the_app_role_on_a_directory_function_is_reported() {
    let (_t, found) = findings_after(
        "GRANT EXECUTE ON FUNCTION tenantry.tenantry_owner_tenant(uuid, uuid, text) TO tenantry_app",
    )
    .await;
    assert_eq!(
        found,
        vec![Finding::DefinerExecutable {
            function: "tenantry.tenantry_owner_tenant(uuid,uuid,text)".into(),
            grantee: "tenantry_app".into()
        }]
    );
    let line = found[0].to_string();
    assert!(
        line.contains("tenantry grants it to its owner and tenantry_directory"),
        "{line}"
    );
}

/// A new function keeps PostgreSQL's default ACL (no `proacl`): `EXECUTE` for `PUBLIC`.
#[tokio::test]
async fn a_new_definer_function_executable_by_everyone_is_reported() {
    let (_t, found) = findings_after(
        "CREATE FUNCTION tenantry_every_tenant() RETURNS SETOF uuid
         LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
         AS 'SELECT id FROM tenantry.tenants'",
    )
    .await;
    assert_eq!(
        found,
        vec![Finding::DefinerExecutable {
            function: "tenantry_every_tenant()".into(),
            grantee: "PUBLIC".into()
        }]
    );
}

#[tokio::test]
async fn a_definer_function_without_a_search_path_is_reported() {
    let (_t, found) =
        findings_after("ALTER FUNCTION tenantry.tenantry_record_sub(uuid, text) RESET search_path")
            .await;
    assert_eq!(
        found,
        vec![Finding::DefinerSearchPath {
            function: "tenantry.tenantry_record_sub(uuid,text)".into(),
            search_path: None,
            problem: SearchPathProblem::NotPinned
        }]
    );
}

#[tokio::test]
async fn a_definer_function_searching_pg_temp_first_is_reported() {
    let (_t, found) = findings_after(
        "ALTER FUNCTION tenantry.tenantry_principal(text) SET search_path = pg_temp, public",
    )
    .await;
    assert_eq!(
        found,
        vec![Finding::DefinerSearchPath {
            function: "tenantry.tenantry_principal(text)".into(),
            search_path: Some("pg_temp, public".into()),
            problem: SearchPathProblem::TempNotLast
        }]
    );
}

#[tokio::test]
async fn a_definer_function_searching_a_writable_schema_is_reported() {
    let (_t, found) = findings_after(
        "CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO tenantry_app;
         ALTER FUNCTION tenantry.tenantry_principal(text) SET search_path = scratch, public, pg_temp",
    )
    .await;
    assert_eq!(
        found,
        vec![
            Finding::CreateAllowed {
                role: "tenantry_app".into(),
                schema: "scratch".into(),
                via_public: false
            },
            Finding::DefinerSearchPath {
                function: "tenantry.tenantry_principal(text)".into(),
                search_path: Some("scratch, public, pg_temp".into()),
                problem: SearchPathProblem::Writable {
                    schema: "scratch".into()
                }
            }
        ]
    );
}

/// Any `SECURITY DEFINER` function of tenantry's schema, the application's own included.
#[tokio::test]
async fn an_application_definer_function_without_a_search_path_is_reported() {
    let (_t, found) = findings_after(
        "CREATE FUNCTION app_invoice_total() RETURNS bigint LANGUAGE sql SECURITY DEFINER
         AS 'SELECT sum(amount_cents) FROM invoices'",
    )
    .await;
    assert_eq!(
        found,
        vec![Finding::DefinerSearchPath {
            function: "app_invoice_total()".into(),
            search_path: None,
            problem: SearchPathProblem::NotPinned
        }]
    );
}
