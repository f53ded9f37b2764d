//! Identity keys that cannot be bent (migration 00000000000008): tenant ids and slugs resolved
//! apart by one parser, emails folded ASCII-only, the identity provider's subject compared once
//! recorded, and a service identity provisioned with the contract's columns alone.
#![allow(
    clippy::disallowed_methods,
    reason = "attacks and probes written as the SQL an operator or attacker sends"
)]

use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenantry::auth::{AuthError, Identity};
use tenantry::identity::{load_principal, select_tenant, TenantRole};
use tenantry::testing::TestDb;
use uuid::Uuid;

async fn try_sql(conn: &mut AsyncPgConnection, sql: &str) -> Result<(), String> {
    conn.batch_execute(sql).await.map_err(|e| e.to_string())
}

fn person(email: &str, sub: Option<&str>) -> Identity {
    Identity::User {
        email: email.into(),
        sub: sub.map(str::to_owned),
    }
}

#[derive(diesel::QueryableByName)]
struct Shaped {
    #[diesel(sql_type = Bool)]
    shaped: bool,
}

/// Every form of a tenant id, as Rust's `Uuid::parse_str` and the schema see it.
#[tenantry::test]
async fn the_schema_and_the_parser_agree_on_what_is_an_id(t: TestDb) {
    let id = Uuid::new_v4();
    let hyphenated = id.hyphenated().to_string();
    let mut keys = vec![
        hyphenated.clone(),
        hyphenated.to_uppercase(),
        id.simple().to_string(),
        id.simple().to_string().to_uppercase(),
        id.braced().to_string(),
        id.urn().to_string(),
        id.urn().to_string().to_uppercase(),
        // near misses: not ids
        format!("{{{}", hyphenated),
        format!("{hyphenated}}}"),
        format!("{{{}}}", id.simple()),
        format!("urn:uuid:{}", id.simple()),
        hyphenated[1..].to_owned(),
        format!("{hyphenated}0"),
        hyphenated.replace('-', "_"),
        "acme".to_owned(),
        "0".repeat(31),
        "g".repeat(32),
    ];
    keys.push(hyphenated.replacen('-', "", 1));
    let mut admin = t.admin().await;
    for key in keys {
        let schema = diesel::sql_query("SELECT tenantry.tenantry_uuid_shaped($1) AS shaped")
            .bind::<Text, _>(&key)
            .get_result::<Shaped>(&mut admin)
            .await
            .expect("tenantry_uuid_shaped")
            .shaped;
        assert_eq!(schema, Uuid::parse_str(&key).is_ok(), "{key}");
    }
    // The slugs the tenants' CHECK lets through can only be the two lowercase forms: both refused.
    for slug in [hyphenated, id.simple().to_string()] {
        let err = try_sql(
            &mut admin,
            &format!("INSERT INTO tenantry.tenants (slug, name) VALUES ('{slug}', 'x')"),
        )
        .await
        .expect_err(&slug);
        assert!(err.contains("tenants_slug_is_not_an_id"), "{err}");
    }
}

/// Before the fix, `slug = key OR id = key` had no order: an Owner naming Acme by id landed in
/// the tenant whose slug was Acme's id. Such a slug (written before the constraint, which is
/// NOT VALID for old rows) no longer matters: an id is looked up as an id.
#[tenantry::test]
async fn an_owner_naming_a_tenant_by_id_lands_in_that_tenant(t: TestDb) {
    let mut admin = t.admin().await;
    admin
        .batch_execute(&format!(
            "ALTER TABLE tenantry.tenants DROP CONSTRAINT tenants_slug_is_not_an_id;
             UPDATE tenantry.tenants SET slug = '{}' WHERE id = '{}'",
            t.acme.id, t.globex.id
        ))
        .await
        .expect("an id-shaped slug, as an old row may hold");
    let owner = load_principal(&t.db, &person(&t.owner.email, None))
        .await
        .expect("owner");
    for _ in 0..5 {
        let by_id = select_tenant(&t.db, &owner, Some(&t.acme.id.to_string()))
            .await
            .expect("by id");
        assert_eq!(by_id.id, t.acme.id);
        assert_eq!(by_id.role, TenantRole::Owner);
        let braced = select_tenant(&t.db, &owner, Some(&t.acme.id.braced().to_string()))
            .await
            .expect("by braced id");
        assert_eq!(braced.id, t.acme.id);
    }
}

/// `lower()` follows the server's locale: the Kelvin sign (U+212A) lowers to `k`. Keys are ASCII
/// and folded ASCII-only, so a look-alike address is another identity, and not provisioned.
#[tenantry::test]
async fn emails_fold_ascii_only(t: TestDb) {
    let mut admin = t.admin().await;
    admin
        .batch_execute("INSERT INTO tenantry.users (email) VALUES ('kate@example.com')")
        .await
        .expect("kate");
    let upper = load_principal(&t.db, &person("KATE@Example.COM", None))
        .await
        .expect("ASCII case folds");
    assert_eq!(upper.email(), "kate@example.com");
    for look_alike in ["\u{212A}ate@example.com", "kate@examp\u{130}e.com"] {
        assert!(
            matches!(
                load_principal(&t.db, &person(look_alike, None)).await,
                Err(AuthError::NotProvisioned(_))
            ),
            "{look_alike} resolved to kate"
        );
        let err = try_sql(
            &mut admin,
            &format!("INSERT INTO tenantry.users (email) VALUES ('{look_alike}')"),
        )
        .await
        .expect_err(look_alike);
        assert!(err.contains("users_email_is_ascii"), "{err}");
    }
    // The unique index folds the same way: the address in another case is the same user.
    let err = try_sql(
        &mut admin,
        "INSERT INTO tenantry.users (email) VALUES ('Kate@EXAMPLE.com')",
    )
    .await
    .expect_err("a second kate");
    assert!(err.contains("users_email_ascii_key"), "{err}");
}

/// A recycled address: the identity provider gives the re-created account a new subject. The
/// recorded one is compared, and only an operator's reset lets the new one in.
#[tenantry::test]
async fn a_token_with_another_subject_is_refused_until_reset(t: TestDb) {
    let email = t.acme.partner.email.clone();
    load_principal(&t.db, &person(&email, Some("sub-one")))
        .await
        .expect("the first subject is recorded");
    load_principal(&t.db, &person(&email, Some("sub-one")))
        .await
        .expect("the same subject again");
    let refused = load_principal(&t.db, &person(&email, Some("sub-two"))).await;
    assert!(
        matches!(&refused, Err(AuthError::SubjectChanged(e)) if *e == email),
        "{refused:?}"
    );
    let refused = refused.unwrap_err();
    assert_eq!((refused.status(), refused.code()), (403, "not_provisioned"));
    assert!(refused.to_string().contains("--reset-subject"), "{refused}");
    // A token without a subject (a trusted proxy's header) records and compares nothing.
    load_principal(&t.db, &person(&email, None))
        .await
        .expect("no subject");

    // The operator's reset (what `tenantry add-user --reset-subject` does).
    t.admin()
        .await
        .batch_execute(&format!(
            "UPDATE tenantry.users SET cf_sub = NULL WHERE email = '{email}'"
        ))
        .await
        .expect("reset");
    // The reset changes only `cf_sub`, which notifies no cache: a fresh Db sees it at once,
    // this one within the cache's maximum age.
    let fresh = tenantry::Db::connect(tenantry::DbConfig::new(t.url(Some("tenantry_app")), None))
        .await
        .expect("db");
    load_principal(&fresh, &person(&email, Some("sub-two")))
        .await
        .expect("the new subject is recorded after the reset");
    assert!(matches!(
        load_principal(&fresh, &person(&email, Some("sub-one"))).await,
        Err(AuthError::SubjectChanged(_))
    ));
}

/// The contract's columns alone (`id, email, display_name, is_owner, created_at`) with a common
/// name as the email make a service identity, as `tenantry add-user --service-token` does.
#[tenantry::test]
async fn a_service_identity_inserted_with_the_contracts_columns_works(t: TestDb) {
    const BOT: &str = "0f2d7c3a9b.access";
    t.admin()
        .await
        .batch_execute(&format!(
            "INSERT INTO tenantry.users (id, email, display_name, is_owner, created_at)
               VALUES (gen_random_uuid(), '{BOT}', 'CI bot', false, now());
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT id, '{}', 'partner' FROM tenantry.users WHERE email = '{BOT}'",
            t.acme.id
        ))
        .await
        .expect("provisioned by SQL");
    let service = Identity::Service {
        common_name: BOT.into(),
    };
    let principal = load_principal(&t.db, &service)
        .await
        .expect("the service identity");
    assert_eq!(principal.memberships()[0].tenant_id, t.acme.id);
    // Still not a person.
    assert!(matches!(
        load_principal(&t.db, &person(BOT, None)).await,
        Err(AuthError::NotProvisioned(_))
    ));
}
