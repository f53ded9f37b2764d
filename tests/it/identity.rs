//! Only the authenticator produces what the extractors trust: a `Principal` that other code puts in
//! a request (a middleware, a test helper leaked into production) grants nothing.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use common::TestDb;
use tenantry::auth::Authenticator;
use tenantry::auth::Identity;
use tenantry::identity::{load_principal, OwnerProof, Tenantry};
use tenantry::{no_tenant_scope, requires_role};

const OWNER: &str = "olga@example.com";
const PARTNER: &str = "paul@example.com";
const EMAIL_HEADER: &str = "cf-access-authenticated-user-email";

#[requires_role(Owner)]
async fn owner_only(owner: OwnerProof, State(t): State<Tenantry>) -> String {
    // Reaching this body is the escalation the test looks for.
    let _ = no_tenant_scope!(&owner, "proof that the Owner route ran");
    let _ = t;
    owner.actor().email().to_owned()
}

/// The middleware an attacker (or a careless helper) adds: it looks the Owner up and puts the
/// Owner's principal in every request's extensions.
async fn insert_owner(State(t): State<Tenantry>, mut request: Request, next: Next) -> Response {
    let owner = load_principal(
        &t.db,
        &Identity::User {
            email: OWNER.into(),
            sub: None,
        },
    )
    .await
    .expect("the owner exists");
    assert!(owner.is_owner());
    request.extensions_mut().insert(owner);
    next.run(request).await
}

async fn serve(tenantry: Tenantry) -> SocketAddr {
    let router = Router::new()
        .route("/admin", get(owner_only))
        .layer(middleware::from_fn_with_state(
            tenantry.clone(),
            insert_owner,
        ))
        .with_state(tenantry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

#[tokio::test]
async fn a_principal_put_in_the_request_by_other_code_is_ignored() {
    let t = TestDb::new().await;
    let acme = t.tenant("acme").await;
    {
        use diesel_async::SimpleAsyncConnection;
        let mut admin = t.admin().await;
        admin
            .batch_execute(&format!(
                "INSERT INTO tenantry.users (email, is_owner) VALUES ('{OWNER}', true), ('{PARTNER}', false);
                 INSERT INTO tenantry.memberships (user_id, tenant_id, role)
                 SELECT id, '{acme}', 'partner' FROM tenantry.users WHERE email = '{PARTNER}';"
            ))
            .await
            .unwrap();
    }
    let tenantry = Tenantry {
        db: t.db.clone(),
        auth: Arc::new(Authenticator::TrustedHeader {
            proxies: vec!["127.0.0.1/32".parse().unwrap()],
        }),
        csrf: Default::default(),
    };
    let addr = serve(tenantry).await;
    let client = reqwest::Client::new();
    let get = |email: Option<&'static str>| {
        let mut request = client.get(format!("http://{addr}/admin"));
        if let Some(email) = email {
            request = request.header(EMAIL_HEADER, email);
        }
        request.send()
    };

    // The partner, with the Owner's principal in its extensions: still a partner.
    let response = get(Some(PARTNER)).await.unwrap();
    assert_eq!(response.status(), 403);
    // No identity at all, with the Owner's principal in its extensions: still nobody.
    let response = get(None).await.unwrap();
    assert_eq!(response.status(), 401);
    // The real Owner gets in: the route itself works.
    let response = get(Some(OWNER)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), OWNER);
}
