//! `inspect` compares each tenant and directory policy exactly with the one tenantry generates:
//! one test per weakening, each asserting the finding that names it.

use crate::common;

use common::{count, TestDb};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenantry::doctor::{Finding, PolicyDifference};
use tenantry::TableDecl;

async fn batch(conn: &mut AsyncPgConnection, sql: &str) {
    conn.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The findings on a properly set up database after `sql` ran as the owner.
async fn findings_after(sql: &str) -> Vec<Finding> {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    batch(&mut admin, sql).await;
    tenantry::doctor::inspect(&mut admin, "tenantry_app")
        .await
        .expect("inspect runs")
        .findings
}

/// The one finding of `findings` that says how `table`'s policy differs.
#[track_caller]
fn difference(findings: &[Finding], table: &str) -> PolicyDifference {
    match findings {
        [Finding::PolicyDiffers {
            table: t,
            difference,
            ..
        }
        | Finding::DirectoryPolicyDiffers {
            table: t,
            difference,
            ..
        }] if t == table => difference.clone(),
        other => panic!("expected one difference on {table}, got {other:?}"),
    }
}

/// Re-creates `table`'s policy `policy` with `options` (`AS RESTRICTIVE`, `FOR UPDATE`, `TO
/// ..`) and `USING`/`WITH CHECK` made from its own: `{q}` stands for its `USING`, `{c}` for its
/// `WITH CHECK`, as PostgreSQL deparses them. The tests change tenantry's expressions around
/// their edges only, so they hold whatever tenantry's tenant check becomes.
fn recreate(table: &str, policy: &str, options: &str, using: &str, with_check: &str) -> String {
    format!(
        "DO $$
         DECLARE q text; c text;
         BEGIN
             SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) INTO q, c
             FROM pg_policy WHERE polrelid = '{table}'::regclass AND polname = '{policy}';
             EXECUTE format('DROP POLICY {policy} ON {table}');
             EXECUTE format('CREATE POLICY {policy} ON {table} {options} USING (%s) WITH CHECK (%s)',
                            replace(replace('{using}', '{{q}}', q), '{{c}}', c),
                            replace(replace('{with_check}', '{{q}}', q), '{{c}}', c));
         END $$"
    )
}

/// [`recreate`] for a tenant table's policy.
fn recreate_tenant(table: &str, options: &str, using: &str, with_check: &str) -> String {
    recreate(
        table,
        "tenantry_tenant_isolation",
        options,
        using,
        with_check,
    )
}

#[tokio::test]
async fn the_policy_recreated_from_its_own_text_passes() {
    let findings = findings_after(&recreate_tenant("invoices", "", "{q}", "{c}")).await;
    assert_eq!(findings, vec![]);
}

#[tokio::test]
async fn a_using_clause_ending_or_true_is_reported() {
    let findings = findings_after(&recreate_tenant("invoices", "", "{q} OR true", "{c}")).await;
    match difference(&findings, "public.invoices") {
        PolicyDifference::Using {
            found: Some(found),
            expected: Some(expected),
        } => {
            assert!(found.ends_with("OR true)"), "{found}");
            assert!(!expected.contains("OR true"), "{expected}");
        }
        other => panic!("{other:?}"),
    }
    let line = findings[0].to_string();
    assert!(
        line.starts_with("public.invoices: policy tenantry_tenant_isolation has USING `")
            && line.contains("OR true)`, not tenantry's `"),
        "{line}"
    );
}

#[tokio::test]
async fn a_with_check_clause_ending_or_true_is_reported() {
    let findings = findings_after(&recreate_tenant("invoices", "", "{q}", "{c} OR true")).await;
    assert!(
        matches!(
            difference(&findings, "public.invoices"),
            PolicyDifference::WithCheck { found: Some(f), .. } if f.ends_with("OR true)")
        ),
        "{findings:?}"
    );
}

#[tokio::test]
async fn a_restrictive_tenant_policy_is_reported() {
    let findings =
        findings_after(&recreate_tenant("invoices", "AS RESTRICTIVE", "{q}", "{c}")).await;
    assert_eq!(
        difference(&findings, "public.invoices"),
        PolicyDifference::Permissive { expected: true }
    );
}

#[tokio::test]
async fn a_tenant_policy_for_one_command_is_reported() {
    // FOR UPDATE: a command that takes both USING and WITH CHECK, so only the command differs.
    let findings = findings_after(&recreate_tenant("invoices", "FOR UPDATE", "{q}", "{c}")).await;
    assert_eq!(
        difference(&findings, "public.invoices"),
        PolicyDifference::Command {
            found: "UPDATE".into(),
            expected: "ALL".into()
        }
    );
}

#[tokio::test]
async fn a_tenant_policy_for_some_roles_is_reported() {
    let findings = findings_after(&recreate_tenant(
        "invoices",
        "TO tenantry_app",
        "{q}",
        "{c}",
    ))
    .await;
    assert_eq!(
        difference(&findings, "public.invoices"),
        PolicyDifference::Roles {
            found: "tenantry_app".into(),
            expected: "PUBLIC".into()
        }
    );
}

#[tokio::test]
async fn a_restrictive_extra_policy_is_allowed_and_a_permissive_one_is_not() {
    // Restrictive policies are ANDed with the tenant policy: they only hide rows.
    let findings = findings_after(
        "CREATE POLICY only_eur ON invoices AS RESTRICTIVE USING (currency = 'EUR');
         CREATE POLICY open_door ON invoices USING (tenant_id IS NOT NULL)",
    )
    .await;
    assert_eq!(
        findings,
        vec![Finding::ExtraPermissivePolicy {
            table: "public.invoices".into(),
            policy: "open_door".into()
        }]
    );
}

#[tokio::test]
async fn a_tenant_column_that_needs_quotes_is_compared_exactly() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    batch(
        &mut admin,
        r#"CREATE TABLE notes (id int PRIMARY KEY,
               "Org" uuid NOT NULL REFERENCES tenantry.tenants (id), body text)"#,
    )
    .await;
    tenantry::declare_tables(&mut admin, &[TableDecl::tenant("notes", "Org")])
        .await
        .expect("declared");
    let report = tenantry::doctor::inspect(&mut admin, "tenantry_app")
        .await
        .unwrap();
    assert_eq!(report.findings, vec![]);

    batch(
        &mut admin,
        r#"ALTER POLICY tenantry_tenant_isolation ON notes USING ("Org" IS NOT NULL)"#,
    )
    .await;
    let findings = tenantry::doctor::inspect(&mut admin, "tenantry_app")
        .await
        .unwrap()
        .findings;
    assert!(
        matches!(
            difference(&findings, "public.notes"),
            PolicyDifference::Using { expected: Some(e), .. } if e.contains("\"Org\"")
        ),
        "{findings:?}"
    );
}

#[tokio::test]
async fn a_widened_directory_policy_is_reported() {
    let findings = findings_after(&recreate(
        "tenantry.tenants",
        "tenantry_directory_tenant",
        "",
        "{q} OR true",
        "{c}",
    ))
    .await;
    assert!(
        matches!(
            &findings[..],
            [Finding::DirectoryPolicyDiffers {
                policy,
                difference: PolicyDifference::Using { found: Some(f), .. },
                ..
            }] if policy == "tenantry_directory_tenant" && f.ends_with("OR true)")
        ),
        "{findings:?}"
    );
}

#[tokio::test]
async fn a_directory_policy_that_lets_users_be_written_is_reported() {
    let findings = findings_after(
        "ALTER POLICY tenantry_directory_member ON tenantry.users WITH CHECK (true)",
    )
    .await;
    assert_eq!(
        difference(&findings, "tenantry.users"),
        PolicyDifference::WithCheck {
            found: Some("true".into()),
            expected: Some("false".into())
        }
    );
}

#[tokio::test]
async fn a_members_policy_that_forgets_the_tenant_is_reported() {
    let findings = findings_after(
        "ALTER POLICY tenantry_directory_member ON tenantry.users
             USING (EXISTS (SELECT 1 FROM tenantry.memberships m WHERE m.user_id = users.id))",
    )
    .await;
    assert!(
        matches!(
            difference(&findings, "tenantry.users"),
            PolicyDifference::Using { .. }
        ),
        "{findings:?}"
    );
}

#[tokio::test]
async fn a_dropped_directory_policy_is_reported() {
    let findings =
        findings_after("DROP POLICY tenantry_directory_membership ON tenantry.memberships").await;
    assert_eq!(
        findings,
        vec![
            Finding::DirectoryPolicyMissing {
                table: "tenantry.memberships".into(),
                policy: "tenantry_directory_membership".into()
            },
            // memberships references tenants, and no policy covers it any more.
            Finding::TenantReferenceWithoutPolicy {
                table: "tenantry.memberships".into(),
                constraint: "memberships_tenant_id_fkey".into()
            }
        ]
    );
}

#[tokio::test]
async fn an_extra_permissive_directory_policy_is_reported() {
    let findings =
        findings_after("CREATE POLICY everyone ON tenantry.memberships FOR SELECT USING (true)")
            .await;
    assert_eq!(
        findings,
        vec![Finding::ExtraPermissivePolicy {
            table: "tenantry.memberships".into(),
            policy: "everyone".into()
        }]
    );
}

#[tokio::test]
async fn directory_row_level_security_disabled_is_reported() {
    let findings = findings_after("ALTER TABLE tenantry.users DISABLE ROW LEVEL SECURITY").await;
    assert_eq!(
        findings,
        vec![Finding::RlsNotEnabled {
            table: "tenantry.users".into()
        }]
    );
}

/// doctor learns the expected policy from `tenantry_declare_tenant_table` itself: once a
/// migration changes the function, every table declared by the old one is reported, until it
/// is declared again; and the directory's policies, which apply the same tenant check, until
/// the migration re-creates them too.
#[tokio::test]
async fn the_expected_policy_follows_the_declaring_function() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    // A "new version": the old function, then a narrower USING on every policy it made.
    batch(
        &mut admin,
        "ALTER FUNCTION tenantry.tenantry_declare_tenant_table(regclass, name)
             RENAME TO tenantry_declare_tenant_table_v1;
         CREATE FUNCTION tenantry.tenantry_declare_tenant_table(tbl regclass, tenant_column name DEFAULT 'tenant_id')
         RETURNS void LANGUAGE plpgsql AS $$
         DECLARE p record;
         BEGIN
             PERFORM tenantry.tenantry_declare_tenant_table_v1(tbl, tenant_column);
             FOR p IN SELECT polname, pg_get_expr(polqual, polrelid) AS q FROM pg_policy
                      WHERE polrelid = tbl LOOP
                 EXECUTE format('ALTER POLICY %I ON %s USING (%s AND %I IS NOT NULL)',
                                p.polname, tbl, p.q, tenant_column);
             END LOOP;
         END $$;",
    )
    .await;
    /// The tables whose policy's USING differs, tenant tables first.
    fn using_differs(findings: &[Finding]) -> Vec<&str> {
        findings
            .iter()
            .map(|f| match f {
                Finding::PolicyDiffers {
                    table,
                    difference: PolicyDifference::Using { .. },
                    ..
                }
                | Finding::DirectoryPolicyDiffers {
                    table,
                    difference: PolicyDifference::Using { .. },
                    ..
                } => table.as_str(),
                other => panic!("{other:?}"),
            })
            .collect()
    }
    let directory = ["tenantry.memberships", "tenantry.tenants", "tenantry.users"];
    let report = tenantry::doctor::inspect(&mut admin, "tenantry_app")
        .await
        .unwrap();
    // tenantry's own tenant table (the job queue's) is declared like the app's.
    let mut expected = vec![
        "public.invoices",
        "public.projects",
        "tenantry.tenantry_jobs",
    ];
    expected.extend(directory);
    assert_eq!(using_differs(&report.findings), expected);

    tenantry::declare_tables(&mut admin, &common::schema::decls())
        .await
        .expect("declared again");
    let report = tenantry::doctor::inspect(&mut admin, "tenantry_app")
        .await
        .unwrap();
    let mut expected = vec!["tenantry.tenantry_jobs"];
    expected.extend(directory);
    assert_eq!(using_differs(&report.findings), expected);
}

#[tokio::test]
async fn the_reference_table_is_rolled_back() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let declared = "SELECT count(*) AS n FROM tenantry.tenantry_declared_tables";
    let before = count(&mut admin, declared).await;
    tenantry::doctor::inspect(&mut admin, "tenantry_app")
        .await
        .unwrap();
    assert_eq!(count(&mut admin, declared).await, before);
    let reference = "SELECT count(*) AS n FROM pg_class WHERE relname LIKE 'tenantry_doctor%'";
    assert_eq!(count(&mut admin, reference).await, 0);
}
