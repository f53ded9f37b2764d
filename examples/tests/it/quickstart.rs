//! The README's quick start, as written: the binary in dev mode with nothing else configured
//! serves `/healthz`, `/api/me` and `/api/invoices` (only the database name and port differ, so
//! that tests can run in parallel).

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_first_command_serves_the_app_in_dev_mode() {
    let db = format!("tenantry_quickstart_{}", std::process::id());
    let database_url = tenantry::testing::database_url(&db, None);
    // The README: TENANTRY_AUTH_MODE=dev TENANTRY_DEV_USER_EMAIL=dev@example.com cargo run -p tenantry-example
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry-example"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TENANTRY_")) {
        cmd.env_remove(k);
    }
    cmd.env("TENANTRY_AUTH_MODE", "dev")
        .env("TENANTRY_DEV_USER_EMAIL", "dev@example.com")
        .env("DATABASE_URL", &database_url)
        .stderr(Stdio::null());
    let (child, port, _, stdout) = common::spawn_example(&mut cmd).await;
    common::drain(stdout);
    let _app = Running(child);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let mut healthy = None;
    for _ in 0..300 {
        if let Ok(r) = client.get(url("/healthz")).send().await {
            healthy = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        healthy,
        Some(serde_json::json!({"status": "ok"})),
        "the app did not come up on {port}"
    );
    let me: serde_json::Value = client
        .get(url("/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "dev@example.com");
    assert_eq!(me["is_owner"], true);
    assert_eq!(me["active_tenant"]["name"], "Acme Corp");
    let invoices: serde_json::Value = client
        .get(url("/api/invoices"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let invoices = invoices.as_array().expect("a list");
    assert!(invoices.len() >= 3, "seeded invoices: {invoices:?}");
    let tenant = me["active_tenant"]["id"].clone();
    assert!(invoices.iter().all(|i| i["tenant_id"] == tenant));

    // Every role without a restart: a request picks another user of the dev database with
    // X-Tenantry-Dev-User (here a viewer of Acme Corp, added as `tenantry add-user` would).
    {
        use diesel_async::SimpleAsyncConnection;
        let tenant_id = tenant.as_str().unwrap();
        tenantry::testing::connect_superuser(&db)
            .await
            .batch_execute(&format!(
                "INSERT INTO tenantry.users (email, display_name) VALUES ('viewer@example.com', 'Viewer'); \
                 INSERT INTO tenantry.memberships (user_id, tenant_id, role) \
                 SELECT id, '{tenant_id}', 'client_viewer' FROM tenantry.users WHERE email = 'viewer@example.com'"
            ))
            .await
            .unwrap();
    }
    let viewer = |r: reqwest::RequestBuilder| {
        r.header(tenantry::auth::DEV_USER_HEADER, "viewer@example.com")
    };
    let me: serde_json::Value = viewer(client.get(url("/api/me")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "viewer@example.com", "{me}");
    assert_eq!(me["is_owner"], false);
    let write = viewer(client.post(url("/api/projects")))
        .json(&serde_json::json!({"name": "a viewer's project"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403, "a viewer cannot write");
    let unknown = client
        .get(url("/api/me"))
        .header(tenantry::auth::DEV_USER_HEADER, "nobody@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 403, "an unknown user is not provisioned");
    drop(_app);
    use diesel_async::SimpleAsyncConnection;
    let _ = common::admin("postgres")
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await;
}
