//! Test support: a scratch PostgreSQL database per test and a runner for the real binary.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// A superuser URL of the server tests run against (it creates and drops databases).
pub fn admin_url() -> String {
    std::env::var("TENANTRY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `admin_url()` with another database.
fn url_of(database: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("TENANTRY_TEST_DATABASE_URL is a URL");
    url.set_path(database);
    url.to_string()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

async fn connect(database: &str) -> AsyncPgConnection {
    let url = url_of(database);
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url} ({e}).\n\
             Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
             or point TENANTRY_TEST_DATABASE_URL at a superuser URL."
            )
        })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A scratch database, dropped with the value.
pub struct ScratchDb {
    pub name: String,
}

impl ScratchDb {
    /// An empty database.
    pub fn empty() -> Self {
        let name = format!(
            "tenantry_cli_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        block_on(async {
            connect("postgres")
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the scratch database");
        });
        ScratchDb { name }
    }

    /// A database migrated with `tenantry migrate`.
    pub fn migrated() -> Self {
        let db = Self::empty();
        let out = db.tenantry(&["migrate"]);
        assert_eq!(out.code, 0, "tenantry migrate: {out:?}");
        db
    }

    /// Its superuser URL (what `DATABASE_URL` is in the tests).
    pub fn url(&self) -> String {
        url_of(&self.name)
    }

    /// Runs SQL as the superuser.
    pub fn sql(&self, sql: &str) {
        block_on(async {
            connect(&self.name)
                .await
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// The text of the single value `query` returns (`SELECT x::text AS v`).
    pub fn text(&self, query: &str) -> Option<String> {
        #[derive(diesel::QueryableByName)]
        struct V {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            v: Option<String>,
        }
        block_on(async {
            let mut conn = connect(&self.name).await;
            let rows: Vec<V> = diesel::sql_query(query)
                .load(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            rows.into_iter().next().and_then(|r| r.v)
        })
    }

    /// A count (`SELECT count(*)::text AS v …`).
    pub fn count(&self, query: &str) -> i64 {
        self.text(query)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{query} returned no count"))
    }

    /// Runs the binary with `DATABASE_URL` pointing at this database.
    pub fn tenantry(&self, args: &[&str]) -> Run {
        run(args, &[("DATABASE_URL", &self.url())])
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Another thread: the test may be unwinding from a panic inside a runtime.
        let _ = std::thread::spawn(move || {
            block_on(async {
                if let Ok(mut c) = AsyncPgConnection::establish(&url_of("postgres")).await {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            })
        })
        .join();
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success.
    #[track_caller]
    pub fn succeeds(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    /// Asserts exit `code` with one line on stderr containing every part of `parts`.
    #[track_caller]
    pub fn fails(self, code: i32, parts: &[&str]) -> Self {
        assert_eq!(self.code, code, "expected exit {code}: {self:#?}");
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "one line: {self:#?}"
        );
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "stderr lacks {part:?}: {self:#?}"
            );
        }
        self
    }

    /// Asserts a usage error reported by clap (exit 2; its message spans several lines).
    #[track_caller]
    pub fn usage_error(self, parts: &[&str]) -> Self {
        assert_eq!(self.code, 2, "expected exit 2: {self:#?}");
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "stderr lacks {part:?}: {self:#?}"
            );
        }
        self
    }

    /// The value of a `key: value` line of stdout.
    #[track_caller]
    pub fn field(&self, key: &str) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key}: line in {self:#?}"))
    }
}

/// Runs the binary with a clean tenantry environment plus `env`.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TENANTRY_APP_DATABASE_URL")
        .env_remove("TENANTRY_BYPASS_DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the tenantry binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
