//! Service identities in the directory (migration `0004_service_identities`): a Cloudflare
//! service token's `<client id>.access` is stored as a `users` row of kind `service`, and the
//! two kinds never resolve to each other.

use crate::common;

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
        &format!("INSERT INTO tenantry.users (email, kind) VALUES ('{BOT}', 'service')"),
    )
    .await
    .expect("a service identity is stored");
    // The kind follows the key's shape, whatever the insert says (migration 00000000000008).
    for (email, written, kind) in [
        ("ci.access", "person", "service"),
        ("bot@example.com", "service", "person"),
        ("x.access", "robot", "service"),
    ] {
        try_sql(
            &mut admin,
            &format!("INSERT INTO tenantry.users (email, kind) VALUES ('{email}', '{written}')"),
        )
        .await
        .unwrap_or_else(|e| panic!("{email}: {e}"));
        let n = common::count(
            &mut admin,
            &format!("SELECT count(*) AS n FROM tenantry.users WHERE email = '{email}' AND kind = '{kind}'"),
        )
        .await;
        assert_eq!(n, 1, "{email} is a {kind}");
    }
    // A key of neither shape is no identity.
    for email in ["bot", "a b.access", "@example.com"] {
        let err = try_sql(
            &mut admin,
            &format!("INSERT INTO tenantry.users (email, kind) VALUES ('{email}', 'service')"),
        )
        .await
        .expect_err(email);
        assert!(err.contains("check constraint"), "{email}: {err}");
    }
    // One key space: the same name in another case is the same identity.
    let err = try_sql(
        &mut admin,
        &format!(
            "INSERT INTO tenantry.users (email, kind) VALUES ('{}', 'service')",
            BOT.to_uppercase().replace(".ACCESS", ".access")
        ),
    )
    .await
    .expect_err("unique");
    assert!(err.contains("users_email_ascii_key"), "{err}");
}

#[tenantry::test]
async fn a_service_token_resolves_to_its_service_identity_only(t: TestDb) {
    let mut admin = t.admin().await;
    try_sql(
        &mut admin,
        &format!(
            "INSERT INTO tenantry.users (email, kind) VALUES ('{BOT}', 'service');
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT id, '{}', 'client_viewer' FROM tenantry.users WHERE email = '{BOT}'",
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
        &format!("SELECT count(*) AS n FROM tenantry.tenantry_principal('{BOT}')"),
    )
    .await;
    assert_eq!(n, 0);
}
