//! [`PgBouncer`]: a transaction pooler in front of the test server, so that tests can run an
//! application the way it runs behind PgBouncer in production.
//!
//! ```no_run
//! use tenantry_runtime::testing::{PgBouncer, ScratchDatabase};
//!
//! # async fn run() {
//! let db = ScratchDatabase::create("myapp").await;
//! // The shared pooler (`bash .ci/pgbouncer start`): every database of the server, its own
//! // pools per database and role. Panics, saying what to start, when it is not running.
//! let shared = PgBouncer::shared().await;
//! let app_url = shared.url(db.name(), "tenantry_app");
//! // A pooler of one's own: one database entry, one server connection for everyone.
//! let own = PgBouncer::start_own(db.name(), 1).await;
//! let one_url = own.url(PgBouncer::OWN_DATABASE, "tenantry_app");
//! # }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::scratch::server_url;

/// How a test's request path reaches PostgreSQL: the same case runs both ways with
/// [`on_both_routes!`](crate::testing::on_both_routes). Migrations and superuser connections
/// always go straight to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the test server.
    Direct,
    /// Through the shared PgBouncer in transaction mode ([`PgBouncer::shared`]), with
    /// `TENANTRY_DB_POOLER=transaction` (`Pooler::Transaction`).
    PgBouncer,
}

/// Runs each listed `async fn name(route: Route)` as two `#[tokio::test]`s, `direct::name` and
/// `pgbouncer::name`: the same case with the request path straight to PostgreSQL and through
/// PgBouncer in transaction mode.
///
/// ```ignore
/// use tenantry::testing::{on_both_routes, Route};
///
/// async fn isolation_holds(route: Route) { /* build the app's DbConfig for `route` */ }
///
/// on_both_routes!(isolation_holds);
/// ```
#[macro_export]
macro_rules! on_both_routes {
    ($($name:ident),* $(,)?) => {
        mod direct {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::testing::Route::Direct).await
            })*
        }
        mod pgbouncer {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::testing::Route::PgBouncer).await
            })*
        }
    };
}

/// A PgBouncer in transaction mode: the shared one of the test machine, or one this test started
/// (stopped when dropped).
#[derive(Debug)]
pub struct PgBouncer {
    addr: SocketAddr,
    own: Option<Own>,
}

#[derive(Debug)]
struct Own {
    child: Child,
    dir: PathBuf,
}

/// The address of the shared pooler: `TENANTRY_TEST_PGBOUNCER` (`host:port`), by default
/// `127.0.0.1:6432`.
fn shared_addr() -> String {
    std::env::var("TENANTRY_TEST_PGBOUNCER")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:6432".to_owned())
}

const START_SHARED: &str = "Start it: bash .ci/pgbouncer start (it installs Debian's pgbouncer \
     with apt-get when missing), or point TENANTRY_TEST_PGBOUNCER at a PgBouncer in transaction \
     mode whose [databases] has `* = host=<test server> port=<its port>`.";

impl PgBouncer {
    /// The database name of a pooler started by [`PgBouncer::start_own`].
    pub const OWN_DATABASE: &'static str = "tenantry_own";

    /// The shared pooler of the test machine (`TENANTRY_TEST_PGBOUNCER`, by default
    /// `127.0.0.1:6432`), after checking that it
    /// answers and pools transactions. Panics with what to start when it does not.
    pub async fn shared() -> PgBouncer {
        let addr_text = shared_addr();
        let addr: SocketAddr = tokio::net::lookup_host(&addr_text)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("TENANTRY_TEST_PGBOUNCER is not a host:port ({addr_text})"));
        let bouncer = PgBouncer { addr, own: None };
        let mode = match bouncer.show("CONFIG").await {
            Ok(rows) => rows
                .into_iter()
                .find(|r| r.first().map(String::as_str) == Some("pool_mode"))
                .and_then(|r| r.get(1).cloned()),
            Err(e) => panic!("PgBouncer is not answering on {addr_text} ({e}).\n{START_SHARED}"),
        };
        assert_eq!(
            mode.as_deref(),
            Some("transaction"),
            "the PgBouncer on {addr_text} does not pool transactions.\n{START_SHARED}"
        );
        bouncer
    }

    /// Starts a PgBouncer of this test's own, in transaction mode, on a free port of 127.0.0.1:
    /// its only database entry, [`PgBouncer::OWN_DATABASE`], is `database` on the test server,
    /// with `pool_size` server connections per role. Panics with what to install when
    /// `pgbouncer` is missing.
    pub async fn start_own(database: &str, pool_size: usize) -> PgBouncer {
        Self::start_own_with(database, pool_size, "").await
    }

    /// [`PgBouncer::start_own`] with `extra` lines appended to its `[pgbouncer]` section (e.g.
    /// `ignore_startup_parameters = extra_float_digits, options`).
    pub async fn start_own_with(database: &str, pool_size: usize, extra: &str) -> PgBouncer {
        Self::start_own_to(&server_url(), database, pool_size, extra).await
    }

    /// [`PgBouncer::start_own_with`] in front of another server than the test server: `server`
    /// is a URL whose host and port the pooler connects to (e.g. a PostgreSQL with TLS on, with
    /// `server_tls_*` lines in `extra`).
    pub async fn start_own_to(
        server: &str,
        database: &str,
        pool_size: usize,
        extra: &str,
    ) -> PgBouncer {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("pgbouncer is not installed.\nInstall it: apt-get install pgbouncer (bash .ci/pgbouncer start does)")
            });
        let server = url::Url::parse(server).expect("the server is a URL");
        let host = server.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = server.port().unwrap_or(5432);
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!(
            "tenantry-pgbouncer-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).expect("the pooler's directory");
        let ini = format!(
            "[databases]\n\
             {own} = host={host} port={port} dbname={database} pool_size={pool_size}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen_port}\n\
             unix_socket_dir =\n\
             logfile = {log}\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             admin_users = postgres\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 200\n\
             server_idle_timeout = 30\n\
             ignore_startup_parameters = extra_float_digits\n\
             {extra}\n",
            own = Self::OWN_DATABASE,
            listen_port = listen.port(),
            log = dir.join("pgbouncer.log").display(),
            users = dir.join("users.txt").display(),
        );
        let users = "\"postgres\" \"\"\n\"tenantry_app\" \"\"\n\"tenantry_bypass\" \"\"\n\"tenantry_directory\" \"\"\n";
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), users).expect("users.txt");
        // PgBouncer refuses to run as root: as root, it switches to postgres, which must be
        // able to read the files and write its log.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        let mut cmd = Command::new(binary);
        if is_root() {
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let bouncer = PgBouncer {
            addr: listen,
            own: Some(Own { child, dir }),
        };
        for _ in 0..100 {
            if TcpStream::connect(listen).await.is_ok() {
                return bouncer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = bouncer
            .own
            .as_ref()
            .and_then(|o| std::fs::read_to_string(o.dir.join("pgbouncer.log")).ok())
            .unwrap_or_default();
        panic!("the test's own PgBouncer did not come up on {listen}:\n{log}");
    }

    /// The pooler's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id of a pooler this test started (for CPU accounting), `None` for the
    /// shared one.
    pub fn pid(&self) -> Option<u32> {
        self.own.as_ref().map(|o| o.child.id())
    }

    /// The URL of `database` as `role` (no password: the pooler trusts local logins, and so
    /// does the test server behind it).
    pub fn url(&self, database: &str, role: &str) -> String {
        format!(
            "postgres://{role}@{}:{}/{database}",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// Runs `SHOW <what>` on the admin console (as `postgres`) and returns its rows as text.
    pub async fn show(&self, what: &str) -> Result<Vec<Vec<String>>, String> {
        let socket = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut config = tokio_postgres::Config::new();
        config.user("postgres").dbname("pgbouncer");
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(5), config.connect_raw(socket, NoTls))
                .await
                .map_err(|_| "no answer within 5 s".to_owned())?
                .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let rows = client
            .simple_query(&format!("SHOW {what}"))
            .await
            .map_err(|e| e.to_string())?;
        drop(client);
        let _ = driver.await;
        Ok(rows
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or_default().to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Server connections the pooler holds for `database` (`SHOW SERVERS`, any state), of
    /// every role.
    pub async fn server_connections(&self, database: &str) -> usize {
        self.servers(database, None).await
    }

    /// Server connections the pooler holds for `database` as `role`.
    pub async fn server_connections_of(&self, database: &str, role: &str) -> usize {
        self.servers(database, Some(role)).await
    }

    async fn servers(&self, database: &str, role: Option<&str>) -> usize {
        let rows = self.show("SERVERS").await.expect("SHOW SERVERS");
        // Columns: type, user, database, state, ...
        rows.iter()
            .filter(|r| r.get(2).map(String::as_str) == Some(database))
            .filter(|r| role.is_none() || r.get(1).map(String::as_str) == role)
            .count()
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(own) = &mut self.own {
            if std::thread::panicking() {
                // What the pooler saw, shown with the failing test's output.
                let log =
                    std::fs::read_to_string(own.dir.join("pgbouncer.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- the test's PgBouncer log (last lines) ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            let _ = own.child.kill();
            let _ = own.child.wait();
            let _ = std::fs::remove_dir_all(&own.dir);
        }
    }
}
