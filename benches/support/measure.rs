//! Measuring helpers shared by the bench binaries: run length, CPU time from `/proc`, load.

use std::time::Duration;

/// `default` seconds, scaled by `TENANTRY_BENCH_SCALE` (e.g. `0.3` for a quick run).
pub fn secs(default: f64) -> Duration {
    let scale: f64 = std::env::var("TENANTRY_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(default * scale)
}

/// CPU time a task has run, from `/proc/<pid>[/task/<tid>]/schedstat` (nanoseconds).
pub fn schedstat(path: &std::path::Path) -> Duration {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// CPU time of the given server processes.
pub fn server_cpu(pids: &[i32]) -> Duration {
    pids.iter()
        .map(|pid| schedstat(std::path::Path::new(&format!("/proc/{pid}/schedstat"))))
        .sum()
}

/// `/proc/loadavg` (1, 5, 15 minutes), to tell a quiet run from a busy one.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A duration in µs with one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}
