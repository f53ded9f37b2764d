//! The app in `cloudflare` mode against a real local certs server: tokens in the header or the
//! cookie, service tokens, and identities mapped to users.

use crate::common;

use common::{assert_error, App, LONELY, OWNER, PARTNER};
use tenantry::testing::{CertsServer, TestKey, TokenMinter};

const TEAM: &str = "acme-test.cloudflareaccess.com";
const AUD: &str = "example-aud-tag";

async fn start() -> (App, CertsServer, TokenMinter) {
    let certs = CertsServer::start(&[&TestKey::A])
        .await
        .expect("certs server");
    let url = certs.url();
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "cloudflare"),
        ("TENANTRY_CF_TEAM_DOMAIN", TEAM),
        ("TENANTRY_CF_AUDIENCE", AUD),
        ("TENANTRY_CF_CERTS_URL", &url),
    ])
    .await;
    (app, certs, TokenMinter::new(TEAM, AUD, &TestKey::A))
}

async fn me(app: &App, header: Option<&str>, cookie: Option<&str>) -> (u16, serde_json::Value) {
    let mut r = app.client.get(app.url("/api/me"));
    if let Some(h) = header {
        r = r.header("cf-access-jwt-assertion", h);
    }
    if let Some(c) = cookie {
        r = r.header("cookie", format!("CF_Authorization={c}"));
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_token_in_the_header_or_the_cookie_identifies_the_user() {
    let (app, _certs, mint) = start().await;
    let good = mint.user(PARTNER).sign();
    let (s, b) = me(&app, Some(&good), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user"]["email"], PARTNER);
    let (s, b) = me(&app, None, Some(&good)).await;
    assert_eq!(s, 200, "cookie only: {b}");
    // the header alone decides: a bad header is 401 even with a good cookie
    let bad = mint.user(PARTNER).claim("aud", "someone-else").sign();
    let (s, b) = me(&app, Some(&bad), Some(&good)).await;
    assert_eq!(s, 401);
    assert_error(&b, "unauthenticated");
    let (s, _) = me(&app, None, None).await;
    assert_eq!(s, 401);
    // the unsigned email header means nothing in this mode
    let r = app
        .client
        .get(app.url("/api/me"))
        .header(common::EMAIL_HEADER, OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // a valid token with a different unsigned email header: the token wins
    let r = app
        .client
        .get(app.url("/api/me"))
        .header("cf-access-jwt-assertion", &good)
        .header(common::EMAIL_HEADER, OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["user"]["email"],
        PARTNER
    );
}

/// A service token resolves to a service identity only: one whose `common_name` is a person's
/// email is not that person, and an unprovisioned one is 403.
#[tokio::test]
async fn a_service_token_never_resolves_to_a_person() {
    let (app, _certs, mint) = start().await;
    let token = mint.service(OWNER).sign();
    let (s, b) = me(&app, Some(&token), None).await;
    assert_eq!(s, 403, "{b}");
    assert_error(&b, "not_provisioned");
    let unknown = mint.service("ci-bot.access").sign();
    let (s, b) = me(&app, Some(&unknown), None).await;
    assert_eq!(s, 403);
    assert_error(&b, "not_provisioned");
}

/// A real-shaped service token: Cloudflare puts its client id, `<id>.access`, in `common_name`.
const BOT: &str = "88bf3b6d86161464f6509f7219099e57.access";

/// The service identity `BOT` (what `tenantry add-user --service-token` stores), partner of
/// acme and client viewer of globex.
async fn provision_bot(app: &App) {
    use diesel_async::SimpleAsyncConnection;
    common::admin(&app.db)
        .await
        .batch_execute(&format!(
            "INSERT INTO tenantry.users (email, kind) VALUES ('{BOT}', 'service');
             INSERT INTO tenantry.memberships (user_id, tenant_id, role)
               SELECT u.id, t.id, CASE t.slug WHEN 'acme' THEN 'partner' ELSE 'client_viewer' END
               FROM tenantry.users u, tenantry.tenants t WHERE u.email = '{BOT}' AND t.slug IN ('acme', 'globex');"
        ))
        .await
        .expect("the service identity");
}

async fn as_token(
    app: &App,
    token: &str,
    method: reqwest::Method,
    path: &str,
    tenant: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = app
        .client
        .request(method, app.url(path))
        .header("cf-access-jwt-assertion", token);
    if let Some(t) = tenant {
        r = r.header("x-tenant", t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("request");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_service_token_acts_with_its_roles_in_its_tenants() {
    let (app, _certs, mint) = start().await;
    provision_bot(&app).await;
    let token = mint.service(BOT).sign();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let (s, me) = as_token(&app, &token, get.clone(), "/api/me", None, None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user"]["email"], BOT);
    assert_eq!(me["is_owner"], false);
    let roles: Vec<(String, String)> = me["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["slug"].as_str().unwrap().into(),
                t["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("acme".to_owned(), "partner".to_owned()),
            ("globex".to_owned(), "client_viewer".to_owned())
        ]
    );

    // Reads in both of its tenants, each seeing its own invoices only.
    for slug in ["acme", "globex"] {
        let (s, list) =
            as_token(&app, &token, get.clone(), "/api/invoices", Some(slug), None).await;
        assert_eq!(s, 200, "{slug}: {list}");
        let list = list.as_array().expect("invoices");
        assert_eq!(list.len(), 3, "{slug}");
        assert!(list
            .iter()
            .all(|i| i["tenant_id"] == app.tenants[slug].to_string()));
    }
    // Writes where it is a partner, not where it is a viewer.
    let project = serde_json::json!({"name": "from the bot"});
    let (s, b) = as_token(
        &app,
        &token,
        post.clone(),
        "/api/projects",
        Some("acme"),
        Some(project.clone()),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["tenant_id"], app.tenants["acme"].to_string());
    let (s, b) = as_token(
        &app,
        &token,
        post,
        "/api/projects",
        Some("globex"),
        Some(project),
    )
    .await;
    assert_eq!(s, 403, "a client viewer cannot write: {b}");
    assert_error(&b, "forbidden");
    // Not in a tenant it is no member of, nor on the Owner's routes.
    let (s, b) = as_token(
        &app,
        &token,
        get.clone(),
        "/api/invoices",
        Some("initech"),
        None,
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = as_token(&app, &token, get.clone(), "/api/admin/tenants", None, None).await;
    assert_eq!(s, 403);
    assert_eq!(
        app.count(
            "SELECT count(*) AS n FROM projects p JOIN tenantry.tenants t ON t.id = p.tenant_id \
             WHERE p.name = 'from the bot' AND t.slug = 'acme'"
        )
        .await,
        1
    );

    // A person's token carrying the service's name is not the service.
    let person = mint.user(BOT).sign();
    let (s, b) = as_token(&app, &person, get, "/api/me", None, None).await;
    assert_eq!(s, 403, "{b}");
    assert_error(&b, "not_provisioned");
}

#[tokio::test]
async fn email_is_the_key_and_another_sub_is_refused_until_reset() {
    let (app, _certs, mint) = start().await;
    let first = mint
        .user("Partner@Example.com")
        .claim("sub", "sub-1")
        .sign();
    let (s, a) = me(&app, Some(&first), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM tenantry.users WHERE email = 'partner@example.com' AND cf_sub = 'sub-1'").await,
        1,
        "the first subject is recorded"
    );
    // The address now belongs to another account at the identity provider: refused.
    let second = mint.user(PARTNER).claim("sub", "sub-2").sign();
    let (s, b) = me(&app, Some(&second), None).await;
    assert_eq!(s, 403, "{b}");
    assert_error(&b, "not_provisioned");
    assert!(
        b["message"].as_str().unwrap().contains("--reset-subject"),
        "{b}"
    );
    // The operator re-provisions it (what `tenantry add-user --reset-subject` does); cached
    // principals see it within their maximum age.
    app.count("WITH r AS (UPDATE tenantry.users SET cf_sub = NULL WHERE email = 'partner@example.com' RETURNING 1) SELECT count(*) AS n FROM r")
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let b = loop {
        let (s, b) = me(&app, Some(&second), None).await;
        if s == 200 {
            break b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {s} after the reset: {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        a["user"]["id"], b["user"]["id"],
        "the same user, re-provisioned"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM tenantry.users WHERE email = 'partner@example.com' AND cf_sub = 'sub-2'").await,
        1
    );
}

#[tokio::test]
async fn authorization_failures_are_403_not_401() {
    let (app, _certs, mint) = start().await;
    let lonely = mint.user(LONELY).sign();
    let r = app
        .client
        .get(app.url("/api/invoices"))
        .header("cf-access-jwt-assertion", &lonely)
        .header("x-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let stranger = mint.user("stranger@example.com").sign();
    let (s, b) = me(&app, Some(&stranger), None).await;
    assert_eq!(s, 403);
    assert_error(&b, "not_provisioned");
}

#[tokio::test]
async fn every_token_is_401_while_the_certs_endpoint_never_answered() {
    let app = App::start_with(&[
        ("TENANTRY_AUTH_MODE", "cloudflare"),
        ("TENANTRY_CF_TEAM_DOMAIN", TEAM),
        ("TENANTRY_CF_AUDIENCE", AUD),
        (
            "TENANTRY_CF_CERTS_URL",
            "http://127.0.0.1:9/cdn-cgi/access/certs",
        ),
    ])
    .await;
    let token = TokenMinter::new(TEAM, AUD, &TestKey::A)
        .user(PARTNER)
        .sign();
    let (s, b) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        me(&app, Some(&token), None),
    )
    .await
    .expect("does not hang");
    assert_eq!(s, 401);
    assert_error(&b, "unauthenticated");
}

/// In `trusted_header` mode a proxy names a service token by its common name in the identity
/// header (a service token has no email); it maps to the service identity, not to a person.
#[tokio::test]
async fn a_trusted_proxy_names_a_service_token_by_its_common_name() {
    let app = App::start().await;
    provision_bot(&app).await;
    let (s, me) = app.get("/api/me", BOT, Some("acme")).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user"]["email"], BOT);
    assert_eq!(me["active_tenant"]["slug"], "acme");
    let (s, b) = app.get("/api/me", "stranger.access", None).await;
    assert_eq!(s, 403, "{b}");
    assert_error(&b, "not_provisioned");
    let (s, b) = app.get("/api/me", "not an identity", None).await;
    assert_eq!(s, 401, "{b}");
    assert_error(&b, "unauthenticated");
}
