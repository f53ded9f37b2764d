//! Measuring helpers shared by the bench binaries: run length, CPU time from `/proc`, load.

use std::future::Future;
use std::time::{Duration, Instant};

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

/// CPU time `d` per operation of `ops`, in µs; `-` when none was measured.
pub fn per_op(d: Duration, ops: usize) -> String {
    if d.is_zero() {
        "-".to_owned()
    } else {
        us(d / ops.max(1) as u32)
    }
}

/// Runs `clients` tasks in a closed loop until `deadline`: client `c` calls `op(state, c, k)`
/// for k = 0, 1, … and starts the next call as soon as one ends. Returns every call's latency
/// (nanoseconds).
pub async fn closed_loop<S, F, Fut>(clients: usize, deadline: Instant, state: S, op: F) -> Vec<u64>
where
    S: Clone + Send + 'static,
    F: Fn(S, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut handles = Vec::with_capacity(clients);
    for c in 0..clients {
        let (state, op) = (state.clone(), op.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(16_384);
            for k in 0.. {
                let t0 = Instant::now();
                op(state.clone(), c, k).await;
                let t1 = Instant::now();
                lat.push((t1 - t0).as_nanos() as u64);
                if t1 >= deadline {
                    break;
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("client task"));
    }
    all
}
