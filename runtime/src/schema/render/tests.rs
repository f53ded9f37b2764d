use super::{render, RenderedMigrations};
use crate::schema::migrate::{GRANTS_SQL, ROLES_SQL};
use crate::schema::FRAMEWORK_MIGRATIONS;
use std::borrow::Cow;

const OTHER: &str = "app_tenantry";

/// Every SQL text tenantry runs from its files: the migrations, the roles and the grants.
fn every_file() -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<_> = FRAMEWORK_MIGRATIONS.migrations.to_vec();
    all.push(("roles.sql", ROLES_SQL));
    all.push(("grants.sql", GRANTS_SQL));
    all
}

/// Where `needle` occurs as the start of a word (not inside `x_tenantry`).
fn at_word_start<'a>(text: &'a str, needle: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.match_indices(needle).filter_map(move |(at, _)| {
        let before = text[..at].chars().next_back();
        (!before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')).then(|| &text[at..])
    })
}

/// `tenantry.tenant` the setting (not `tenantry.tenants`, `tenantry.tenantry_..`).
fn settings(text: &str) -> usize {
    at_word_start(text, "tenantry.tenant")
        .filter(|rest| {
            !rest["tenantry.tenant".len()..]
                .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
        .count()
}

#[test]
fn the_default_name_renders_nothing() {
    for (name, sql) in every_file() {
        assert!(
            matches!(render(sql, "tenantry"), Cow::Borrowed(s) if s == sql),
            "{name}"
        );
    }
}

#[test]
fn every_migration_roles_and_grants_name_the_configured_schema_alone() {
    assert!(FRAMEWORK_MIGRATIONS.migrations.len() >= 11);
    for (name, sql) in every_file() {
        let out = render(sql, OTHER);
        // No object of `tenantry.` is left: what remains is the setting `tenantry.tenant`.
        let qualified = at_word_start(&out, "tenantry.").count();
        assert_eq!(
            qualified,
            settings(&out),
            "{name}: a `tenantry.` object is left"
        );
        let upper = out.to_ascii_uppercase();
        for schema in [
            "SCHEMA TENANTRY;",
            "SCHEMA TENANTRY ",
            "SCHEMA TENANTRY'",
            "SCHEMA TENANTRY\n",
            "EXISTS TENANTRY;",
        ] {
            assert!(!upper.contains(schema), "{name}: `{schema}` is left");
        }
        for path in [
            "search_path = tenantry",
            "search_path=tenantry",
            "'tenantry, ",
        ] {
            assert!(
                !out.contains(path),
                "{name}: the search path `{path}` is left"
            );
        }
        assert!(
            !out.contains("'tenantry'"),
            "{name}: the literal 'tenantry' is left"
        );
        // The settings, the domain strings and the names of functions are unchanged.
        assert_eq!(
            settings(&out),
            settings(sql),
            "{name}: a setting was renamed"
        );
        for kept in [
            "'tenantry-",
            "'tenantry audit_log v1'",
            "LIKE 'tenantry\\_%'",
        ] {
            assert_eq!(
                out.matches(kept).count(),
                sql.matches(kept).count(),
                "{name}: `{kept}` changed"
            );
        }
        assert_eq!(
            out.matches("tenantry_").count(),
            sql.matches("tenantry_").count() + out.matches("app_tenantry_").count()
                - sql.matches("app_tenantry_").count(),
            "{name}: a `tenantry_` name changed"
        );
    }
}

#[test]
fn the_configured_schema_is_where_the_default_was() {
    let all: String = every_file().iter().map(|(_, sql)| *sql).collect();
    let rendered = render(&all, OTHER);
    for expected in [
        "CREATE SCHEMA IF NOT EXISTS app_tenantry;",
        "'search_path', 'app_tenantry, ' ||",
        "SET search_path = app_tenantry, pg_temp",
        "app_tenantry.tenantry_declare_tenant_table(",
        "pg_catalog.format('app_tenantry.%I', c.relname)",
        "'app_tenantry'::regnamespace",
        "SET SCHEMA app_tenantry',",
        "GRANT USAGE ON SCHEMA app_tenantry TO tenantry_app",
        "current_setting('tenantry.tenant', true)",
    ] {
        assert!(rendered.contains(expected), "`{expected}` missing");
    }
}

#[test]
fn only_the_schema_is_rewritten() {
    let cases = [
        ("SELECT tenantry.tenants", "SELECT s.tenants"),
        ("to_regclass('tenantry.users')", "to_regclass('s.users')"),
        (
            "SET LOCAL tenantry.tenant = 'x'",
            "SET LOCAL tenantry.tenant = 'x'",
        ),
        (
            "current_setting('tenantry.tenant')",
            "current_setting('tenantry.tenant')",
        ),
        ("x_tenantry.tenants", "x_tenantry.tenants"),
        ("tenantry_app", "tenantry_app"),
        ("'tenantry-tx-v1:'", "'tenantry-tx-v1:'"),
        ("'tenantry audit_log v1'", "'tenantry audit_log v1'"),
        (
            "run `tenantry audit --verify`",
            "run `tenantry audit --verify`",
        ),
        ("nspname = 'tenantry'", "nspname = 's'"),
        ("create schema tenantry;", "create schema s;"),
        (
            "SET search_path = tenantry, pg_temp",
            "SET search_path = s, pg_temp",
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(render(sql, "s"), expected, "{sql}");
    }
}

#[test]
fn migrations_keep_their_names_and_order() {
    use diesel::migration::MigrationSource;
    let source = RenderedMigrations::new(&[("0002_b", "SELECT 2"), ("0001_a", "SELECT 1")]);
    let all = MigrationSource::<diesel::pg::Pg>::migrations(&source).expect("listed");
    let names: Vec<(String, String)> = all
        .iter()
        .map(|m| (m.name().to_string(), m.name().version().to_string()))
        .collect();
    assert_eq!(
        names,
        [
            ("0002_b".into(), "0002".into()),
            ("0001_a".into(), "0001".into())
        ]
    );
    assert!(all.iter().all(|m| m.metadata().run_in_transaction()));
    let framework: Vec<&str> = FRAMEWORK_MIGRATIONS
        .migrations
        .iter()
        .map(|m| m.0)
        .collect();
    let mut sorted = framework.clone();
    sorted.sort_unstable();
    assert_eq!(framework, sorted);
    assert_eq!(framework[0], "00000000000001_framework");
}
