//! Statistics of a measured run (operations, wall time, latency percentiles, CPU time split by
//! thread name and PostgreSQL backend), and a watcher of a scratch database's backends.

use std::time::Duration;

use diesel_async::AsyncPgConnection;

use crate::measure::schedstat;

/// Operations, the wall time they took, each one's latency and the CPU time spent.
#[derive(Default)]
pub struct Stats {
    pub ops: usize,
    pub elapsed: Duration,
    pub lat_ns: Vec<u64>,
    /// CPU of the server runtime's threads (the app).
    pub app_cpu: Duration,
    /// CPU of every other thread of this process (the HTTP clients).
    pub client_cpu: Duration,
    /// CPU of the PostgreSQL backends of the scratch database.
    pub pg_cpu: Duration,
}

impl Stats {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn pct(&mut self, p: f64) -> Duration {
        if self.lat_ns.is_empty() {
            return Duration::ZERO;
        }
        self.lat_ns.sort_unstable();
        let i = ((self.lat_ns.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_nanos(self.lat_ns[i])
    }
}

/// CPU time of this process's threads: `(threads whose name starts with `server_threads`,
/// everything else)`.
pub fn process_cpu(server_threads: &str) -> (Duration, Duration) {
    let mut split = (Duration::ZERO, Duration::ZERO);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return split;
    };
    for task in tasks.flatten() {
        let cpu = schedstat(&task.path().join("schedstat"));
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(server_threads) {
            split.0 += cpu;
        } else {
            split.1 += cpu;
        }
    }
    split
}

/// A superuser connection to the `postgres` database: it watches the scratch database without
/// running a transaction in it.
pub struct Watcher {
    pub conn: tokio::sync::Mutex<AsyncPgConnection>,
    pub db: String,
}

impl Watcher {
    /// The backends connected to the scratch database.
    #[allow(
        clippy::disallowed_methods,
        reason = "the benchmark's setup and reference queries, raw SQL on purpose"
    )]
    pub async fn backend_pids(&self) -> Vec<i32> {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        let mut conn = self.conn.lock().await;
        diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(&self.db)
            .load::<Pid>(&mut *conn)
            .await
            .expect("pg_stat_activity")
            .into_iter()
            .map(|p| p.pid)
            .collect()
    }

    /// `pg_stat_database.xact_commit` of the scratch database (as flushed so far).
    pub async fn xact_commit(&self) -> i64 {
        let mut conn = self.conn.lock().await;
        crate::common::count(
            &mut conn,
            &format!(
                "SELECT xact_commit AS n FROM pg_stat_database WHERE datname = '{}'",
                self.db
            ),
        )
        .await
    }
}
