//! Service identities in the directory (migration `0004_service_identities`): a Cloudflare
//! service token's `<client id>.access` is stored as a `users` row of kind `service`, and the
//! two kinds never resolve to each other.

mod common;

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenantry::auth::{AuthError, Identity};
use tenantry::identity::load_principal;
use tenantry::testing::TestDb;

const BOT: &str = "88bf3b6d86161464f6509f7219099e57.access";

async fn try_sql(conn: &mut AsyncPgConnection, sql: &str) -> Result<(), String> {
    conn.batch_execute(sql).await.map_err(|e| e.to_string())
}

#[tenantry::test]
async fn each_kind_has_the_shape_of_its_key(t: TestDb) {
    let mut admin = t.admin().await;
    try_sql(
        &mut admin,
        &format!("INSERT INTO users (email, kind) VALUES ('{BOT}', 'service')"),
    )
    .await
    .expect("a service identity is stored");
    for (email, kind) in [
        ("ci.access", "person"),
        ("bot@example.com", "service"),
        ("bot", "service"),
        ("x.access", "robot"),
    ] {
        let err = try_sql(
            &mut admin,
            &format!("INSERT INTO users (email, kind) VALUES ('{email}', '{kind}')"),
        )
        .await
        .expect_err(email);
        assert!(err.contains("check constraint"), "{email} {kind}: {err}");
    }
    // One key space: the same name in another case is the same identity.
    let err = try_sql(
        &mut admin,
        &format!(
            "INSERT INTO users (email, kind) VALUES ('{}', 'service')",
            BOT.to_uppercase().replace(".ACCESS", ".access")
        ),
    )
    .await
    .expect_err("unique");
    assert!(err.contains("users_email_lower_key"), "{err}");
}

#[tenantry::test]
async fn a_service_token_resolves_to_its_service_identity_only(t: TestDb) {
    let mut admin = t.admin().await;
    try_sql(
        &mut admin,
        &format!(
            "INSERT INTO users (email, kind) VALUES ('{BOT}', 'service');
             INSERT INTO memberships (user_id, tenant_id, role)
               SELECT id, '{}', 'client_viewer' FROM users WHERE email = '{BOT}'",
            t.globex.id
        ),
    )
    .await
    .expect("provisioned");
    let service = Identity::Service {
        common_name: BOT.into(),
    };
    let principal = load_principal(&t.db, &service).await.expect("resolves");
    assert_eq!(principal.email(), BOT);
    assert_eq!(principal.memberships().len(), 1);
    assert_eq!(principal.memberships()[0].tenant_id, t.globex.id);

    // A person's identity with the service's name is not the service; a service token named
    // like a person is not that person.
    let as_person = Identity::User {
        email: BOT.into(),
        sub: None,
    };
    let as_service = Identity::Service {
        common_name: t.acme.partner.email.clone(),
    };
    for identity in [as_person, as_service] {
        assert!(
            matches!(
                load_principal(&t.db, &identity).await,
                Err(AuthError::NotProvisioned(_))
            ),
            "{identity:?}"
        );
    }
    // And the one-argument lookup of migration 0002 finds persons only.
    let n = common::count(
        &mut admin,
        &format!("SELECT count(*) AS n FROM tenantry_principal('{BOT}')"),
    )
    .await;
    assert_eq!(n, 0);
}
