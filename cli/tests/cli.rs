//! The `tenantry` binary, run for real against a scratch database per test.

mod support;

use support::{block_on, run, ScratchDb};

// ---- help and configuration (no database needed) ----

#[test]
fn help_of_each_command_mentions_its_flags() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &[
                "migrate",
                "seed-tenant",
                "add-user",
                "audit",
                "doctor",
                "citus-plan",
                "rotate-tenant-key",
                "top",
                "--database-url",
                "Exit codes",
            ],
        ),
        (
            &["top", "--help"],
            &[
                "--url",
                "--window",
                "[default: 5m]",
                "TENANTRY_METRICS_BIND",
                "_other",
            ],
        ),
        (
            &["rotate-tenant-key", "--help"],
            &["--grace", "[default: 1h]", "30 s", "Exit codes"],
        ),
        (
            &["migrate", "--help"],
            &["--database-url", "already up to date"],
        ),
        (&["seed-tenant", "--help"], &["--name", "--slug"]),
        (
            &["add-user", "--help"],
            &[
                "--email",
                "--owner",
                "--tenant",
                "--role",
                "partner",
                "client-viewer",
            ],
        ),
        (
            &["audit", "--help"],
            &[
                "--limit",
                "1–500",
                "[default: 20]",
                "--verify",
                "first broken row",
            ],
        ),
        (
            &["doctor", "--help"],
            &[
                "TENANTRY_APP_DATABASE_URL",
                "row-level security",
                "--citus",
                "Exit codes",
            ],
        ),
        (
            &["citus-plan", "--help"],
            &[
                "create_distributed_table",
                "create_reference_table",
                "doctor --citus",
            ],
        ),
    ];
    for (args, parts) in cases {
        let out = run(args, &[]).succeeds();
        for part in *parts {
            assert!(
                out.stdout.contains(part),
                "`tenantry {}` lacks {part:?}:\n{}",
                args.join(" "),
                out.stdout
            );
        }
    }
}

#[test]
fn a_malformed_database_url_exits_2_naming_the_variable() {
    for bad in [
        "not a url",
        "mysql://root@127.0.0.1/db",
        "postgres://postgres@127.0.0.1:5432",
    ] {
        run(&["migrate"], &[("DATABASE_URL", bad)]).fails(2, &["DATABASE_URL"]);
    }
    run(&["audit", "--database-url", "http://x/y"], &[])
        .fails(2, &["--database-url", "postgres://"]);
}

#[test]
fn a_password_in_a_malformed_url_is_not_printed() {
    let out = run(
        &["migrate"],
        &[("DATABASE_URL", "postgres://u:hunter2@h:port/db")],
    )
    .fails(2, &["DATABASE_URL"]);
    assert!(!out.stderr.contains("hunter2"), "{out:?}");
}

#[test]
fn an_unreachable_database_says_where_and_what_to_start() {
    for args in [&["migrate"][..], &["doctor"], &["audit"]] {
        run(
            args,
            &[(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/tenantry_example",
            )],
        )
        .fails(3, &["127.0.0.1:1", "DATABASE_URL", "start PostgreSQL"]);
    }
}

#[test]
fn a_missing_database_is_named() {
    let url = format!(
        "postgres://postgres@127.0.0.1:5432/tenantry_cli_absent_{}",
        std::process::id()
    );
    run(&["audit"], &[("DATABASE_URL", &url)]).fails(3, &["does not exist", "createdb"]);
}

#[test]
fn a_malformed_app_database_url_is_named() {
    let db = ScratchDb::migrated();
    run(
        &["doctor"],
        &[
            ("DATABASE_URL", &db.url()),
            ("TENANTRY_APP_DATABASE_URL", "nope"),
        ],
    )
    .fails(2, &["TENANTRY_APP_DATABASE_URL"]);
}

// ---- migrate ----

#[test]
fn migrate_applies_once_then_is_up_to_date() {
    let db = ScratchDb::empty();
    let first = db.tenantry(&["migrate"]).succeeds();
    assert!(
        first.stdout.contains("applied 00000000000001_framework"),
        "{first:?}"
    );
    let second = db.tenantry(&["migrate"]).succeeds();
    assert!(second.stdout.contains("already up to date"), "{second:?}");
    assert!(!second.stdout.contains("applied 0001"), "{second:?}");
}

#[test]
fn commands_on_an_unmigrated_database_say_to_migrate() {
    let db = ScratchDb::empty();
    db.tenantry(&["seed-tenant", "--name", "Acme"])
        .fails(4, &["tenantry migrate"]);
    db.tenantry(&["add-user", "--email", "a@example.com", "--owner"])
        .fails(4, &["tenantry migrate"]);
    db.tenantry(&["audit"]).fails(4, &["tenantry migrate"]);
}

// ---- seed-tenant ----

#[test]
fn seed_tenant_twice_changes_nothing_the_second_time() {
    let db = ScratchDb::migrated();
    let first = db
        .tenantry(&["seed-tenant", "--name", "Acme Corp"])
        .succeeds();
    assert!(first.stdout.contains("created tenant"), "{first:?}");
    assert_eq!(first.field("slug"), "acme-corp");
    let id = first.field("id");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{first:?}");

    let second = db
        .tenantry(&["seed-tenant", "--name", "Acme Corp"])
        .succeeds();
    assert!(second.stdout.contains("unchanged"), "{second:?}");
    assert_eq!(second.field("id"), id);
    assert_eq!(second.field("slug"), "acme-corp");

    // The same slug given explicitly, with another name: still unchanged, name kept.
    let third = db
        .tenantry(&["seed-tenant", "--name", "Acme Inc", "--slug", "acme-corp"])
        .succeeds();
    assert!(third.stdout.contains("unchanged"), "{third:?}");
    assert_eq!(third.field("id"), id);
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.tenants"),
        1
    );
    assert_eq!(
        db.text("SELECT name AS v FROM tenantry.tenants").as_deref(),
        Some("Acme Corp")
    );
}

#[test]
fn seed_tenant_takes_an_explicit_slug() {
    let db = ScratchDb::migrated();
    let out = db
        .tenantry(&["seed-tenant", "--name", "Globex, Inc.", "--slug", "globex"])
        .succeeds();
    assert_eq!(out.field("slug"), "globex");
    let derived = db
        .tenantry(&["seed-tenant", "--name", "  Initech -- Software & Co.  "])
        .succeeds();
    assert_eq!(derived.field("slug"), "initech-software-co");
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.tenants"),
        2
    );
}

#[test]
fn seed_tenant_rejects_bad_names_and_slugs() {
    let db = ScratchDb::migrated();
    db.tenantry(&["seed-tenant", "--name", "   "])
        .fails(2, &["--name", "empty"]);
    db.tenantry(&["seed-tenant", "--name", "Acme", "--slug", "Acme_Corp"])
        .fails(2, &["--slug", "Acme_Corp"]);
    db.tenantry(&["seed-tenant", "--name", "Acme", "--slug=-acme"])
        .fails(2, &["--slug"]);
    db.tenantry(&["seed-tenant", "--name", "日本"])
        .fails(2, &["--slug"]);
    db.tenantry(&["seed-tenant"]).usage_error(&["--name"]);
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.tenants"),
        0
    );
}

// ---- add-user ----

#[test]
fn add_user_as_owner() {
    let db = ScratchDb::migrated();
    let out = db
        .tenantry(&["add-user", "--email", "Olivia@Example.com", "--owner"])
        .succeeds();
    assert!(
        out.stdout.contains("created user Olivia@Example.com"),
        "{out:?}"
    );
    assert!(out.stdout.contains("granted Owner"), "{out:?}");
    assert_eq!(
        db.text("SELECT is_owner::text AS v FROM tenantry.users WHERE lower(email) = 'olivia@example.com'")
            .as_deref(),
        Some("true")
    );
}

#[test]
fn add_user_with_a_tenant_role() {
    let db = ScratchDb::migrated();
    db.tenantry(&["seed-tenant", "--name", "Acme Corp"])
        .succeeds();
    let out = db
        .tenantry(&[
            "add-user",
            "--email",
            "vic@example.com",
            "--tenant",
            "acme-corp",
            "--role",
            "client-viewer",
        ])
        .succeeds();
    assert!(
        out.stdout
            .contains("granted client_viewer in tenant acme-corp"),
        "{out:?}"
    );
    let role = "SELECT m.role AS v FROM tenantry.memberships m JOIN tenantry.users u ON u.id = m.user_id \
                JOIN tenantry.tenants t ON t.id = m.tenant_id WHERE u.email = 'vic@example.com' AND t.slug = 'acme-corp'";
    assert_eq!(db.text(role).as_deref(), Some("client_viewer"));
    assert_eq!(
        db.text("SELECT is_owner::text AS v FROM tenantry.users")
            .as_deref(),
        Some("false")
    );

    // Another role for the same tenant replaces the first.
    let out = db
        .tenantry(&[
            "add-user",
            "--email",
            "vic@example.com",
            "--tenant",
            "acme-corp",
            "--role",
            "partner",
        ])
        .succeeds();
    assert!(
        out.stdout.contains("from client_viewer to partner"),
        "{out:?}"
    );
    assert_eq!(db.text(role).as_deref(), Some("partner"));
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.memberships"),
        1
    );
}

#[test]
fn add_user_again_is_idempotent_and_says_so() {
    let db = ScratchDb::migrated();
    db.tenantry(&["seed-tenant", "--name", "Acme Corp"])
        .succeeds();
    let args = [
        "add-user",
        "--email",
        "pat@example.com",
        "--tenant",
        "acme-corp",
        "--role",
        "partner",
    ];
    db.tenantry(&args).succeeds();
    // Emails are matched case-insensitively.
    let again = db
        .tenantry(&[
            "add-user",
            "--email",
            "PAT@Example.COM",
            "--tenant",
            "acme-corp",
            "--role",
            "partner",
        ])
        .succeeds();
    assert!(
        again
            .stdout
            .contains("unchanged: user pat@example.com already exists"),
        "{again:?}"
    );
    assert!(
        again
            .stdout
            .contains("unchanged: pat@example.com is already partner"),
        "{again:?}"
    );

    db.tenantry(&["add-user", "--email", "own@example.com", "--owner"])
        .succeeds();
    let again = db
        .tenantry(&["add-user", "--email", "own@example.com", "--owner"])
        .succeeds();
    assert!(again.stdout.contains("is already an Owner"), "{again:?}");

    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.users"),
        2
    );
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.memberships"),
        1
    );
}

#[test]
fn add_user_for_a_missing_tenant_creates_nothing() {
    let db = ScratchDb::migrated();
    db.tenantry(&[
        "add-user",
        "--email",
        "x@example.com",
        "--tenant",
        "nope",
        "--role",
        "partner",
    ])
    .fails(4, &["no tenant", "\"nope\"", "seed-tenant"]);
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.users"),
        0
    );
}

/// A Cloudflare service token is identified by its common name, `<client id>.access`: the CLI
/// stores it as a service identity, and the principal lookup finds it for a service token only.
#[test]
fn add_user_creates_a_service_identity_that_service_tokens_resolve_to() {
    let db = ScratchDb::migrated();
    db.tenantry(&["seed-tenant", "--name", "Acme Corp"])
        .succeeds();
    let id = "88bf3b6d86161464f6509f7219099e57";
    let common_name = format!("{id}.access");
    let grant = [
        "add-user",
        "--service-token",
        id,
        "--tenant",
        "acme-corp",
        "--role",
        "partner",
    ];
    let out = db.tenantry(&grant).succeeds();
    assert!(
        out.stdout
            .contains(&format!("created service identity {common_name}")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("granted partner in tenant acme-corp"),
        "{out:?}"
    );
    let again = db.tenantry(&grant).succeeds();
    assert!(
        again.stdout.contains("unchanged: service identity"),
        "{again:?}"
    );
    assert_eq!(
        db.text("SELECT kind || ' ' || email AS v FROM tenantry.users")
            .as_deref(),
        Some(format!("service {common_name}").as_str())
    );

    let (service, person) = block_on(async {
        use tenantry::auth::Identity;
        let app_url = tenantry::testing::database_url(&db.name, Some("tenantry_app"));
        let pools = tenantry::Db::connect(tenantry::DbConfig::new(app_url, None))
            .await
            .expect("the app pool");
        let service = tenantry::identity::load_principal(
            &pools,
            &Identity::Service {
                common_name: common_name.to_uppercase().replace(".ACCESS", ".access"),
            },
        )
        .await;
        let person = tenantry::identity::load_principal(
            &pools,
            &Identity::User {
                email: common_name.clone(),
                sub: None,
            },
        )
        .await;
        (service, person)
    });
    let service = service.expect("the service token resolves (case-insensitively)");
    assert_eq!(service.email(), common_name);
    let roles: Vec<_> = service
        .memberships()
        .iter()
        .map(|m| (m.slug.as_str(), m.role.as_str()))
        .collect();
    assert_eq!(roles, [("acme-corp", "partner")]);
    assert_eq!(
        person
            .expect_err("a person's identity never resolves to a service row")
            .status(),
        403
    );

    for bad in ["a@b.access", "two words", "x.y.access"] {
        db.tenantry(&["add-user", "--service-token", bad, "--owner"])
            .fails(2, &["--service-token"]);
    }
    db.tenantry(&[
        "add-user",
        "--email",
        "a@example.com",
        "--service-token",
        id,
        "--owner",
    ])
    .usage_error(&["--service-token", "cannot be used with"]);
}

#[test]
fn add_user_rejects_bad_input() {
    let db = ScratchDb::migrated();
    db.tenantry(&["seed-tenant", "--name", "Acme Corp"])
        .succeeds();
    for bad in [
        "alice",
        "@example.com",
        "alice@",
        "alice@localhost",
        "a b@example.com",
    ] {
        db.tenantry(&["add-user", "--email", bad, "--owner"])
            .fails(2, &["--email"]);
    }
    db.tenantry(&[
        "add-user",
        "--email",
        "a@example.com",
        "--owner",
        "--tenant",
        "acme-corp",
    ])
    .usage_error(&["--owner", "cannot be used with"]);
    db.tenantry(&[
        "add-user",
        "--email",
        "a@example.com",
        "--tenant",
        "acme-corp",
    ])
    .usage_error(&["--role"]);
    db.tenantry(&["add-user", "--email", "a@example.com", "--role", "partner"])
        .usage_error(&["--tenant"]);
    db.tenantry(&["add-user", "--email", "a@example.com"])
        .usage_error(&["--owner"]);
    db.tenantry(&[
        "add-user",
        "--email",
        "a@example.com",
        "--tenant",
        "acme-corp",
        "--role",
        "owner",
    ])
    .usage_error(&["partner", "client-viewer"]);
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.users"),
        0
    );
}

// ---- audit ----

#[test]
fn audit_prints_the_newest_rows_first() {
    let db = ScratchDb::migrated();
    let empty = db.tenantry(&["audit"]).succeeds();
    assert!(empty.stdout.contains("no audit rows"), "{empty:?}");

    let tenant = db
        .tenantry(&["seed-tenant", "--name", "Acme Corp"])
        .succeeds()
        .field("id");
    // The server assigns id and time: rows written one after the other, oldest first.
    for (actor, action, reason, tenant) in [
        (
            "old@example.com",
            "admin.audit",
            "'oldest read'",
            "NULL".to_owned(),
        ),
        (
            "mid@example.com",
            "admin.tenants",
            "'quarterly review'",
            format!("'{tenant}'"),
        ),
        (
            "new@example.com",
            "bypass",
            "E'multi\\nline'",
            "NULL".to_owned(),
        ),
    ] {
        db.sql(&format!(
            "SELECT tenantry.tenantry_audit_write(NULL, '{actor}', '{action}', {reason}, {tenant}, NULL, NULL)"
        ));
    }

    let all = db.tenantry(&["audit"]).succeeds().stdout;
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 4, "{all}");
    for column in ["ID", "AT", "ACTOR_EMAIL", "ACTION", "REASON", "TENANT_ID"] {
        assert!(lines[0].contains(column), "{all}");
    }
    assert!(
        lines[1].contains("new@example.com") && lines[1].contains("multi\\nline"),
        "{all}"
    );
    assert!(
        lines[2].contains("mid@example.com") && lines[2].contains(&tenant),
        "{all}"
    );
    assert!(lines[3].contains("old@example.com"), "{all}");
    // Aligned: every row's action starts in the header's ACTION column.
    let col = lines[0].find("ACTION").expect("header");
    for line in &lines[1..] {
        assert!(
            line[col..].starts_with(|c: char| c.is_ascii_alphabetic()),
            "{all}"
        );
        assert_eq!(&line[col - 2..col], "  ", "{all}");
    }

    let two = db.tenantry(&["audit", "--limit", "2"]).succeeds().stdout;
    assert_eq!(two.lines().count(), 3, "{two}");
    assert!(!two.contains("old@example.com"), "{two}");
}

#[test]
fn audit_limit_is_checked() {
    for bad in ["0", "501", "ten"] {
        run(&["audit", "--limit", bad], &[]).usage_error(&["--limit"]);
    }
}

fn write_audit_row(db: &ScratchDb, reason: &str) {
    db.sql(&format!(
        "SELECT tenantry.tenantry_audit_write(NULL, 'job:cli-test', 'job', '{reason}', NULL, NULL, NULL)"
    ));
}

#[test]
fn audit_verify_prints_the_head_of_an_intact_chain() {
    let db = ScratchDb::migrated();
    let empty = db.tenantry(&["audit", "--verify"]).succeeds();
    assert!(empty.stdout.starts_with("audit chain intact"), "{empty:?}");
    assert_eq!(empty.field("rows"), "0");

    for reason in ["first", "second", "third"] {
        write_audit_row(&db, reason);
    }
    let intact = db.tenantry(&["audit", "--verify"]).succeeds();
    assert_eq!(intact.field("rows"), "3");
    assert_eq!(intact.field("head row"), "3");
    let recorded = db
        .text("SELECT encode(hash, 'hex') AS v FROM tenantry.audit_log_chain_head")
        .expect("a head");
    assert_eq!(intact.field("head hash"), recorded);
    assert_eq!(recorded.len(), 64);
    run(&["audit", "--verify", "--limit", "5"], &[]).usage_error(&["--verify", "--limit"]);
}

#[test]
fn audit_verify_names_the_first_row_a_superuser_changed() {
    let db = ScratchDb::migrated();
    for reason in ["first", "second", "third", "fourth"] {
        write_audit_row(&db, reason);
    }
    db.tenantry(&["audit", "--verify"]).succeeds();
    // A superuser turns the triggers off, rewrites one row and slips one in with a chosen id.
    db.sql(
        "BEGIN; SET LOCAL session_replication_role = replica;
         UPDATE tenantry.audit_log SET reason = 'nothing to see' WHERE id = 2;
         DELETE FROM tenantry.audit_log WHERE id = 3;
         INSERT INTO tenantry.audit_log (id, at, actor_email, action, reason)
             VALUES (1000000, now() - interval '1 year', 'owner@example.com', 'x', 'forged');
         COMMIT",
    );
    let broken = db.tenantry(&["audit", "--verify"]).fails(
        1,
        &[
            "audit chain is broken at row 2",
            "content changed",
            "3 problems",
        ],
    );
    let lines: Vec<&str> = broken.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{broken:?}");
    assert!(
        lines[0].contains("row 2 (chain position 2): content changed"),
        "{broken:?}"
    );
    assert!(
        lines[1].contains("row 3 (chain position 3): deleted"),
        "{broken:?}"
    );
    assert!(
        lines[2].contains("row 1000000: inserted out of chain"),
        "{broken:?}"
    );
}

// ---- doctor ----

const NOTES: &str = "CREATE TABLE notes (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id),
        body text);
    SELECT tenantry.tenantry_declare_tenant_table('notes');";

#[test]
fn doctor_passes_then_names_the_table_without_row_level_security() {
    let db = ScratchDb::migrated();
    db.sql(NOTES);
    let ok = db.tenantry(&["doctor"]).succeeds().stdout;
    assert!(ok.contains("ok    public.notes"), "{ok}");
    assert!(ok.contains("role tenantry_app"), "{ok}");
    assert!(
        ok.contains("checked 2 tenant tables (public.notes, tenantry.tenantry_jobs)"),
        "{ok}"
    );
    for line in [
        "ok    directory (tenantry.memberships, tenantry.tenants, tenantry.users): row-level security enabled, exactly tenantry's policies",
        "ok    tenantry_app, tenantry_bypass: own nothing, and are members of no role",
        "ok    tenantry_app, tenantry_bypass: create neither temporary tables nor objects in any schema",
        "ok    SECURITY DEFINER functions: executable only by the roles tenantry grants them to",
    ] {
        assert!(ok.lines().any(|l| l.starts_with(line)), "{line}\n{ok}");
    }
    assert!(!ok.contains("FAIL"), "{ok}");

    db.sql("ALTER TABLE notes DISABLE ROW LEVEL SECURITY");
    let failed = db.tenantry(&["doctor"]).fails(1, &["1 problem"]);
    assert!(
        failed
            .stdout
            .contains("FAIL  public.notes: row-level security is not enabled"),
        "{failed:?}"
    );
    assert!(!failed.stdout.contains("ok    public.notes"), "{failed:?}");
}

#[test]
fn doctor_reports_undeclared_tenant_tables() {
    let db = ScratchDb::migrated();
    db.sql("CREATE TABLE stray (id int PRIMARY KEY, tenant_id uuid)");
    let out = db.tenantry(&["doctor"]).fails(1, &["problem"]);
    assert!(out.stdout.contains("FAIL  public.stray"), "{out:?}");
}

#[test]
fn doctor_reports_a_table_referencing_tenants_under_any_column_name() {
    let db = ScratchDb::migrated();
    db.sql(
        "CREATE TABLE org_notes (id int PRIMARY KEY,
            org uuid NOT NULL CONSTRAINT org_notes_org_fkey REFERENCES tenantry.tenants (id))",
    );
    let out = db.tenantry(&["doctor"]).fails(1, &["1 problem"]);
    assert!(
        out.stdout.contains(
            "FAIL  public.org_notes: references tenantry.tenants (org_notes_org_fkey) but has no row-level security policy"
        ),
        "{out:?}"
    );
    assert!(
        !out.stdout
            .contains("ok    every table with a foreign key to tenants"),
        "{out:?}"
    );
    db.sql("SELECT tenantry.tenantry_declare_tenant_table('org_notes', 'org')");
    let ok = db.tenantry(&["doctor"]).succeeds().stdout;
    assert!(
        ok.contains("ok    every table with a foreign key to tenants has row-level security"),
        "{ok}"
    );
}

#[test]
fn doctor_checks_the_role_of_the_app_url() {
    let db = ScratchDb::migrated();
    let app_url = db.url(); // the superuser: row-level security does not apply to it
    let out = run(
        &["doctor"],
        &[
            ("DATABASE_URL", &db.url()),
            ("TENANTRY_APP_DATABASE_URL", &app_url),
        ],
    )
    .fails(1, &["problem"]);
    assert!(
        out.stdout
            .contains("FAIL  role postgres ignores row-level security"),
        "{out:?}"
    );
}

#[test]
fn doctor_names_a_policy_that_ends_or_true() {
    let db = ScratchDb::migrated();
    db.sql(NOTES);
    // The policy's own USING, widened: a text match on app.tenant_id would still pass it.
    db.sql(
        "DO $$ BEGIN
             EXECUTE format('ALTER POLICY tenantry_tenant_isolation ON notes USING (%s OR true)',
                 (SELECT pg_get_expr(polqual, polrelid) FROM pg_policy
                  WHERE polrelid = 'notes'::regclass));
         END $$",
    );
    let out = db.tenantry(&["doctor"]).fails(1, &["1 problem"]);
    assert!(
        out.stdout.lines().any(|l| l
            .starts_with("FAIL  public.notes: policy tenantry_tenant_isolation has USING `")
            && l.contains("OR true)`, not tenantry's `")),
        "{out:?}"
    );
    assert!(!out.stdout.contains("ok    public.notes"), "{out:?}");
}

#[test]
fn doctor_on_a_freshly_migrated_database_finds_nothing() {
    let db = ScratchDb::migrated();
    let out = db.tenantry(&["doctor"]).succeeds();
    assert!(!out.stdout.contains("FAIL"), "{out:?}");
}

#[test]
fn doctor_checks_the_role_of_the_bypass_url() {
    let db = ScratchDb::migrated();
    let bypass = block_on(tenantry::testing::ScratchRole::create(
        "tenantry_r",
        &db.name,
        "LOGIN BYPASSRLS",
    ));
    db.sql(&format!(
        "CREATE SCHEMA reports AUTHORIZATION {}",
        bypass.name()
    ));
    let out = run(
        &["doctor"],
        &[
            ("DATABASE_URL", &db.url()),
            ("TENANTRY_BYPASS_DATABASE_URL", &bypass.url()),
        ],
    )
    .fails(1, &["2 problem"]);
    for line in [
        format!("FAIL  role {} owns schema reports", bypass.name()),
        format!(
            "FAIL  role {} may create objects in schema reports",
            bypass.name()
        ),
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&line)),
            "{line}\n{out:?}"
        );
    }
    run(
        &["doctor"],
        &[
            ("DATABASE_URL", &db.url()),
            ("TENANTRY_BYPASS_DATABASE_URL", "nope"),
        ],
    )
    .fails(2, &["TENANTRY_BYPASS_DATABASE_URL"]);
}

#[test]
fn doctor_on_an_unmigrated_database_says_to_migrate() {
    let db = ScratchDb::empty();
    let out = db.tenantry(&["doctor"]).fails(1, &["problem"]);
    assert!(out.stdout.contains("tenantry migrate"), "{out:?}");
}

// ---- Citus ----

/// Tenant tables keyed by `id` alone, as most schemas start.
const SHARDABLE_LATER: &str = "CREATE TABLE projects (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id),
        name text NOT NULL,
        UNIQUE (tenant_id, id));
    CREATE TABLE tasks (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id),
        project_id uuid NOT NULL REFERENCES projects (id),
        code text NOT NULL UNIQUE);
    SELECT tenantry.tenantry_declare_tenant_table('projects');
    SELECT tenantry.tenantry_declare_tenant_table('tasks');";

/// The README's table declaration ("Migrations"), as written there, is ready for Citus.
#[test]
fn the_readmes_table_declaration_passes_doctor_citus() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("-- migrations/2025-01-01-000000_invoices/up.sql")
        .expect("the README's migration block");
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let db = ScratchDb::migrated();
    db.sql(block);
    let ok = db.tenantry(&["doctor", "--citus"]).succeeds().stdout;
    assert!(ok.contains("ok    citus:"), "{ok}");
}

#[test]
fn doctor_citus_names_each_table_and_constraint_then_passes() {
    let db = ScratchDb::migrated();
    db.sql(SHARDABLE_LATER);
    // Without --citus, isolation is all that is checked: it holds.
    db.tenantry(&["doctor"]).succeeds();
    let out = db
        .tenantry(&["doctor", "--citus"])
        .fails(1, &["4 problem(s)"]);
    for line in [
        "FAIL  citus: public.projects: primary key projects_pkey does not include the distribution column tenant_id",
        "FAIL  citus: public.tasks: primary key tasks_pkey does not include the distribution column tenant_id",
        "FAIL  citus: public.tasks: unique constraint tasks_code_key does not include the distribution column tenant_id",
        "FAIL  citus: public.tasks: foreign key tasks_project_id_fkey to public.projects does not pair the distribution columns",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(line)),
            "{line}\n{out:?}"
        );
    }
    let refused = db
        .tenantry(&["citus-plan"])
        .fails(1, &["not ready for Citus", "doctor --citus"]);
    assert!(
        refused.stdout.contains("FAIL  citus: public.tasks"),
        "{refused:?}"
    );

    db.sql(
        "ALTER TABLE tasks DROP CONSTRAINT tasks_project_id_fkey, DROP CONSTRAINT tasks_code_key,
             DROP CONSTRAINT tasks_pkey, ADD PRIMARY KEY (tenant_id, id),
             ADD UNIQUE (tenant_id, code);
         ALTER TABLE projects DROP CONSTRAINT projects_pkey, ADD PRIMARY KEY (tenant_id, id);
         ALTER TABLE tasks ADD FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id);",
    );
    let ok = db.tenantry(&["doctor", "--citus"]).succeeds().stdout;
    assert!(ok.contains("ok    citus:"), "{ok}");

    let plan = db.tenantry(&["citus-plan"]).succeeds().stdout;
    let statements: Vec<&str> = plan.lines().filter(|l| !l.starts_with("--")).collect();
    // One transaction, and the placements in dependency order (the foreign keys of the tables
    // to distribute are dropped before them and put back after).
    let order = [
        "BEGIN;",
        "ALTER ROLE tenantry_app SET citus.propagate_set_commands = 'local';",
        "SELECT tenantry.tenantry_citus_prepare();",
        "ALTER TABLE public.tasks DROP CONSTRAINT tasks_tenant_id_project_id_fkey;",
        "SELECT create_reference_table('tenantry.tenantry_tenant_keys');",
        "SELECT create_reference_table('tenantry.tenants');",
        "SELECT create_reference_table('tenantry.users');",
        "SELECT create_reference_table('tenantry.memberships');",
        "SELECT citus_add_local_table_to_metadata('tenantry.audit_log');",
        "SELECT create_distributed_table('public.projects', 'tenant_id');",
        "SELECT create_distributed_table('public.tasks', 'tenant_id', colocate_with => 'public.projects');",
        "SELECT create_distributed_table('tenantry.tenantry_jobs', 'tenant_id', colocate_with => 'public.projects');",
        "ALTER TABLE public.tasks ADD CONSTRAINT tasks_tenant_id_project_id_fkey FOREIGN KEY (tenant_id, project_id) REFERENCES projects(tenant_id, id);",
        "COMMIT;",
    ];
    let positions: Vec<Option<usize>> = order
        .iter()
        .map(|line| statements.iter().position(|s| s == line))
        .collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.windows(2).all(|w| w[0] < w[1]),
        "{order:#?} in this order in\n{plan}"
    );
}

#[test]
fn citus_plan_names_the_app_role_of_the_app_url_and_needs_migrations() {
    let db = ScratchDb::migrated();
    let out = run(
        &["citus-plan"],
        &[
            ("DATABASE_URL", &db.url()),
            (
                "TENANTRY_APP_DATABASE_URL",
                &db.url().replace("postgres@", "web_app@"),
            ),
        ],
    )
    .succeeds();
    assert!(
        out.stdout
            .contains("ALTER ROLE web_app SET citus.propagate_set_commands = 'local';"),
        "{out:?}"
    );
    let empty = ScratchDb::empty();
    empty
        .tenantry(&["citus-plan"])
        .fails(4, &["tenantry migrate"]);
}

/// A new key: the older ones get an expiry `--grace` from now, the new one none, and a running
/// application (which signs with the newest key it read) keeps working until it reads again.
#[test]
fn rotate_tenant_key_adds_a_key_and_lets_the_older_ones_expire() {
    let db = ScratchDb::migrated();
    let out = db
        .tenantry(&["rotate-tenant-key", "--grace", "2h"])
        .succeeds();
    assert!(
        out.stdout
            .contains("tenant key 2 added; older keys expire after 02:00:00"),
        "{out:?}"
    );
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.tenantry_tenant_keys WHERE expires_at IS NULL"),
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*)::text AS v FROM tenantry.tenantry_tenant_keys \
             WHERE id = 1 AND expires_at BETWEEN now() + interval '119 min' AND now() + interval '2 h'"
        ),
        1
    );
    db.tenantry(&["rotate-tenant-key", "--grace", "soon"])
        .fails(2, &["--grace", "\"soon\"", "1h, 30min, 0s"]);
}

// ---- identity keys and role names (issue 17) ----

#[test]
fn add_user_reset_subject_clears_the_recorded_sub() {
    let db = ScratchDb::migrated();
    db.tenantry(&["add-user", "--email", "Rita@Example.com", "--owner"])
        .succeeds();
    db.sql("UPDATE tenantry.users SET cf_sub = 'old-sub' WHERE email = 'Rita@Example.com'");
    // Named in another ASCII case: the same user.
    let out = db
        .tenantry(&["add-user", "--email", "rita@example.COM", "--reset-subject"])
        .succeeds();
    assert!(
        out.stdout
            .contains("cleared the recorded subject of Rita@Example.com"),
        "{out:?}"
    );
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.users WHERE cf_sub IS NULL AND email = 'Rita@Example.com'"),
        1
    );
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.users"),
        1
    );
}

#[test]
fn add_user_refuses_a_non_ascii_address() {
    let db = ScratchDb::migrated();
    db.tenantry(&["add-user", "--email", "\u{212A}ate@example.com", "--owner"])
        .fails(2, &["--email", "not ASCII"]);
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.users"),
        0
    );
}

#[test]
fn seed_tenant_refuses_a_slug_shaped_like_an_id() {
    let db = ScratchDb::migrated();
    for slug in [
        "0d4c2a5e-9f3b-4c1d-8e7a-6b5c4d3e2f10",
        "0d4c2a5e9f3b4c1d8e7a6b5c4d3e2f10",
    ] {
        db.tenantry(&["seed-tenant", "--name", "Acme", "--slug", slug])
            .fails(2, &["--slug", "shaped like a tenant id"]);
    }
    assert_eq!(
        db.count("SELECT count(*)::text AS v FROM tenantry.tenants"),
        0
    );
}

#[test]
fn migrate_creates_and_grants_the_deployments_roles() {
    let db = ScratchDb::empty();
    let out = run(
        &["migrate"],
        &[
            ("DATABASE_URL", &db.url()),
            ("TENANTRY_ROLE_PREFIX", "tenantry_t17cli_"),
        ],
    )
    .succeeds();
    assert!(
        out.stdout
            .contains("tenantry_t17cli_app, tenantry_t17cli_bypass and tenantry_t17cli_directory"),
        "{out:?}"
    );
    assert_eq!(
        db.text(
            "SELECT has_table_privilege('tenantry_t17cli_app', 'tenantry.tenants', 'SELECT')::text AS v"
        )
        .as_deref(),
        Some("true")
    );
    assert_eq!(
        db.text(
            "SELECT has_table_privilege('tenantry_app', 'tenantry.tenants', 'SELECT')::text AS v"
        )
        .as_deref(),
        Some("false")
    );
    assert_eq!(
        db.text(
            "SELECT role_name::text AS v FROM tenantry.tenantry_roles WHERE purpose = 'bypass'"
        )
        .as_deref(),
        Some("tenantry_t17cli_bypass")
    );
    // doctor knows them: nothing to report for the deployment's app role.
    run(
        &["doctor"],
        &[
            ("DATABASE_URL", &db.url()),
            ("TENANTRY_ROLE_PREFIX", "tenantry_t17cli_"),
        ],
    )
    .succeeds();
    run(
        &["migrate"],
        &[
            ("DATABASE_URL", &db.url()),
            ("TENANTRY_APP_ROLE", "Bad-Name"),
        ],
    )
    .fails(2, &["TENANTRY_APP_ROLE", "not a usable role name"]);
}

// ---- top: a running instance's metrics (no database) ----

/// Serves `body` as an instance's `/metrics` to one request, on a port of its own.
fn metrics_server(body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"GET /metrics "),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let _ = write!(
            stream,
            "HTTP/1.0 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    });
    format!("http://{addr}/metrics")
}

/// What an instance under a flood exports (the names and shapes of `Db::metrics_text`).
const FLOODED: &str = "\
# HELP tenantry_tenant_recent_db_seconds database seconds over the last minute or five
# TYPE tenantry_tenant_recent_db_seconds gauge
tenantry_tenant_recent_db_seconds{tenant=\"globex\",window=\"1m\"} 0.5
tenantry_tenant_recent_db_seconds{tenant=\"globex\",window=\"5m\"} 2.25
tenantry_tenant_recent_db_seconds{tenant=\"acme\",window=\"1m\"} 12.0
tenantry_tenant_recent_db_seconds{tenant=\"acme\",window=\"5m\"} 61.5
tenantry_tenant_recent_db_seconds{tenant=\"_other\",window=\"5m\"} 0.0
# TYPE tenantry_tenant_recent_shed gauge
tenantry_tenant_recent_shed{tenant=\"acme\",window=\"5m\"} 310.0
tenantry_tenant_recent_shed{tenant=\"globex\",window=\"5m\"} 0.0
# TYPE tenantry_tenant_recent_transactions gauge
tenantry_tenant_recent_transactions{tenant=\"acme\",window=\"5m\"} 5000.0
tenantry_tenant_recent_transactions{tenant=\"globex\",window=\"5m\"} 96.0
# TYPE tenantry_tenant_connections gauge
tenantry_tenant_connections{tenant=\"acme\"} 8.0
tenantry_tenant_waiting{tenant=\"acme\"} 16.0
# TYPE tenantry_pool_connections gauge
tenantry_pool_connections{state=\"in_use\"} 9.0
tenantry_pool_connections{state=\"max\"} 16.0
# EOF
";

#[test]
fn top_shows_the_busiest_tenants_by_database_time_and_sheds() {
    let url = metrics_server(FLOODED);
    let out = run(&["top", "--url", &url], &[]).succeeds();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].contains("last 5m") && lines[0].contains("9 of 16 connections in use"),
        "{out:?}"
    );
    assert!(lines[1].starts_with("TENANT"), "{out:?}");
    let acme: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        acme,
        ["acme", "61.500", "310", "5000", "0.000", "8", "16"],
        "{out:?}"
    );
    assert!(lines[3].starts_with("globex"), "busiest first: {out:?}");
    assert!(
        !out.stdout.contains("_other"),
        "a tenant with no load is left out: {out:?}"
    );
}

#[test]
fn top_reads_the_window_asked_and_names_an_unreadable_url() {
    let url = metrics_server(FLOODED);
    let out = run(
        &["top", "--window", "1m"],
        &[("TENANTRY_METRICS_URL", &url)],
    )
    .succeeds();
    assert!(
        out.stdout.contains("acme") && out.stdout.contains("12.000"),
        "{out:?}"
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    run(&["top", "--url", &format!("http://{closed}/metrics")], &[])
        .fails(3, &[&closed.to_string(), "TENANTRY_METRICS_BIND"]);
    run(&["top", "--window", "2h"], &[]).usage_error(&["--window"]);
}
