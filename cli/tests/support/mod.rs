//! Test support: a scratch PostgreSQL database per test and a runner for the real binary.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::process::Command;

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};

use tenantry::testing::{connect_superuser as connect, database_url, ScratchDatabase};

/// `admin_url()` with another database.
fn url_of(database: &str) -> String {
    database_url(database, None)
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

/// A scratch database, dropped with the value.
pub struct ScratchDb {
    pub name: String,
    _scratch: ScratchDatabase,
}

impl ScratchDb {
    /// An empty database.
    pub fn empty() -> Self {
        let scratch = block_on(ScratchDatabase::create("tenantry_cli"));
        ScratchDb {
            name: scratch.name().to_owned(),
            _scratch: scratch,
        }
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
    #[allow(
        clippy::disallowed_methods,
        reason = "the CLI's tests read the database as the superuser, raw SQL on purpose"
    )]
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
        .env_remove("TENANTRY_BYPASS_DATABASE_URL")
        .env_remove("TENANTRY_ROLE_PREFIX")
        .env_remove("TENANTRY_APP_ROLE")
        .env_remove("TENANTRY_BYPASS_ROLE")
        .env_remove("TENANTRY_DIRECTORY_ROLE");
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
