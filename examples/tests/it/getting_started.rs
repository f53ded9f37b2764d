//! docs/getting-started.md's app (`examples/notes/main.rs`, shown in the guide as it is
//! compiled) run as the guide runs it: it migrates an empty database, and over HTTP a partner
//! writes in its tenant, another tenant's partner sees none of it, and a viewer reads but
//! cannot write. And the docs stay true: every Rust block of the README and of `docs/` is
//! compiled (it appears in a compiled file), and every setting the code reads is listed in
//! `docs/settings.md`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use tenantry::testing::{ScratchDatabase, TestDb};
use tenantry::DbError;
use tenantry_example::models::{Invoice, MIGRATIONS};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The directory's rows, written as the migration role (as `tenantry add-user` does).
mod directory {
    use diesel::ExpressionMethods;
    use diesel_async::RunQueryDsl;
    use tenantry::schema::{memberships, tenants, users};
    use uuid::Uuid;

    pub(crate) async fn member(
        conn: &mut diesel_async::AsyncPgConnection,
        tenant: Uuid,
        email: &str,
        role: &str,
    ) {
        let user: Uuid = diesel::insert_into(users::table)
            .values((users::email.eq(email), users::display_name.eq(email)))
            .returning(users::id)
            .get_result(conn)
            .await
            .unwrap();
        diesel::insert_into(memberships::table)
            .values((
                memberships::user_id.eq(user),
                memberships::tenant_id.eq(tenant),
                memberships::role.eq(role),
            ))
            .execute(conn)
            .await
            .unwrap();
    }

    pub(crate) async fn tenant(conn: &mut diesel_async::AsyncPgConnection, slug: &str) -> Uuid {
        diesel::insert_into(tenants::table)
            .values((tenants::slug.eq(slug), tenants::name.eq(slug)))
            .returning(tenants::id)
            .get_result(conn)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_guides_app_keeps_each_tenants_notes_to_itself() {
    let scratch = ScratchDatabase::create("tenantry_notes").await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notes"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TENANTRY_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .env("DATABASE_URL", scratch.url(None))
        .env("TENANTRY_AUTH_MODE", "trusted_header")
        .env("TENANTRY_TRUSTED_PROXIES", "127.0.0.1/32")
        .env("TENANTRY_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the notes app starts");
    let stdout = child.stdout.take().unwrap();
    let _app = Running(child);
    // The app prints its address once it has migrated and listens: wait for that line.
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("notes on ")
        .unwrap_or_else(|| panic!("the app did not start: {line:?}"))
        .to_owned();

    let mut conn = scratch.connect().await;
    let acme = directory::tenant(&mut conn, "acme").await;
    let globex = directory::tenant(&mut conn, "globex").await;
    directory::member(&mut conn, acme, "partner@acme.test", "partner").await;
    directory::member(&mut conn, acme, "viewer@acme.test", "client_viewer").await;
    directory::member(&mut conn, globex, "partner@globex.test", "partner").await;

    let client = reqwest::Client::new();
    let as_user = |method: reqwest::Method, email: &str, slug: &str| {
        client
            .request(method, format!("{base}/api/notes"))
            .header(tenantry::auth::TRUSTED_EMAIL_HEADER, email)
            .header("x-tenant", slug)
    };
    let created = as_user(reqwest::Method::POST, "partner@acme.test", "acme")
        .json(&serde_json::json!({"body": "acme's plan"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let note: serde_json::Value = created.json().await.unwrap();
    assert_eq!(
        note["tenant_id"],
        acme.to_string(),
        "the tenant comes from the request"
    );

    let list = |email: &'static str, slug: &'static str| {
        let request = as_user(reqwest::Method::GET, email, slug);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{email} lists {slug}");
            response.json::<Vec<serde_json::Value>>().await.unwrap()
        }
    };
    assert_eq!(list("viewer@acme.test", "acme").await.len(), 1);
    assert!(list("partner@globex.test", "globex").await.is_empty());

    // A viewer cannot write, and a partner cannot pick another tenant.
    let refused = as_user(reqwest::Method::POST, "viewer@acme.test", "acme")
        .json(&serde_json::json!({"body": "a viewer's note"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    let other = as_user(reqwest::Method::GET, "partner@globex.test", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    // A bad body is a 4xx with the JSON error body, from tenantry's DbError: an empty note
    // breaks the table's check.
    let empty = as_user(reqwest::Method::POST, "partner@acme.test", "acme")
        .json(&serde_json::json!({"body": " "}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    let body: serde_json::Value = empty.json().await.unwrap();
    assert_eq!(body["error"], "invalid");
    assert_eq!(list("viewer@acme.test", "acme").await.len(), 1);
}

// The README's "Testing your app", as written there.

#[rustfmt::skip]
#[tenantry::test(migrations = MIGRATIONS)]   // your embed_migrations!("migrations")
async fn a_viewer_reads_but_cannot_see_other_tenants(t: TestDb) {
    let n: i64 = t.db.tx(&t.acme.as_viewer(), async |conn| {
        Ok::<_, DbError>(Invoice::scoped(conn).count().get_result(conn).await?)
    }).await.unwrap();
    assert_eq!(n, 0);
}

/// The repository's root.
fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A text's lines, trimmed, without the empty ones: a block matches however it is indented.
fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_rust_block_of_the_readme_and_the_docs_is_compiled() {
    let root = root();
    let mut sources = Vec::new();
    rust_files(&root.join("examples"), &mut sources);
    let sources: Vec<String> = sources
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut docs = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            docs.push(entry.path());
        }
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let mut block: Option<(usize, String)> = None;
        for (n, line) in text.lines().enumerate() {
            match &mut block {
                None if line.starts_with("```rust") => block = Some((n + 1, String::new())),
                Some((start, body)) if line.starts_with("```") => {
                    let want = lines(body);
                    let found = sources.iter().any(|src| {
                        let have = lines(src);
                        have.windows(want.len()).any(|w| w == want.as_slice())
                    });
                    if !found {
                        missing.push(format!("{}:{start}", doc.display()));
                    }
                    checked += 1;
                    block = None;
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} Rust blocks found: is the fence still ```rust?"
    );
    assert!(
        missing.is_empty(),
        "these Rust blocks are not in any compiled file under examples/ (put the block, \
         verbatim, in examples/src/readme_snippets.rs or the file it shows): {missing:#?}"
    );
}

#[test]
fn every_setting_the_code_reads_is_in_docs_settings_md() {
    let root = root();
    let listed = std::fs::read_to_string(root.join("docs/settings.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("runtime/src"), &mut files);
    rust_files(&root.join("cli/src"), &mut files);
    let mut unlisted = std::collections::BTreeSet::new();
    for file in files
        .iter()
        .filter(|p| !p.to_string_lossy().contains("test"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices('"') {
            let rest = &text[i + 1..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            let is_setting =
                (name.starts_with("TENANTRY_") && name.len() > 9) || name == "DATABASE_URL";
            if is_setting
                && rest[name.len()..].starts_with('"')
                && !listed.contains(&format!("`{name}`"))
            {
                unlisted.insert(name);
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "read by the code, missing from docs/settings.md: {unlisted:?}"
    );
}
