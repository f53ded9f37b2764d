//! Micro-benchmarks on one thread: short rounds whose order rotates, so that the machine's noise
//! falls on every call alike; the median and fastest round per call, and the thread's CPU time.

use std::time::{Duration, Instant};

use crate::measure::schedstat;

/// Untimed calls of each micro-benchmark before the first round.
pub const WARMUP: u64 = 200;

/// One micro-benchmark: what one call does, and its per-batch results.
pub struct Micro<'a> {
    pub label: &'static str,
    call: Box<dyn FnMut() + 'a>,
    /// Wall nanoseconds per call of each batch.
    batch_ns: Vec<f64>,
    /// Timed calls (the warm-up's [`WARMUP`] calls come on top).
    pub calls: u64,
    cpu: Duration,
}

impl<'a> Micro<'a> {
    pub fn new(label: &'static str, call: impl FnMut() + 'a) -> Self {
        Micro {
            label,
            call: Box::new(call),
            batch_ns: Vec::new(),
            calls: 0,
            cpu: Duration::ZERO,
        }
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    schedstat(std::path::Path::new("/proc/thread-self/schedstat"))
}

/// Runs the micro-benchmarks in `rounds` rotated rounds of `batch` each, on this thread, after
/// [`WARMUP`] calls of each.
pub fn run_micro(micros: &mut [Micro<'_>], rounds: usize, batch: Duration) {
    for m in micros.iter_mut() {
        for _ in 0..WARMUP {
            (m.call)();
        }
    }
    for r in 0..rounds {
        for i in 0..micros.len() {
            let m = &mut micros[(i + r) % micros.len()];
            let (c0, t0) = (thread_cpu(), Instant::now());
            let mut n = 0u64;
            loop {
                for _ in 0..16 {
                    (m.call)();
                }
                n += 16;
                if t0.elapsed() >= batch {
                    break;
                }
            }
            let wall = t0.elapsed();
            m.cpu += thread_cpu().saturating_sub(c0);
            m.calls += n;
            m.batch_ns.push(wall.as_nanos() as f64 / n as f64);
        }
    }
}

/// Prints one row per micro-benchmark: the median µs per call over the rounds, one ratio column
/// per `(index, header)` of `bases` (this row's median over that row's), the fastest round, and
/// the thread's CPU time per call.
pub fn print_micro(micros: &mut [Micro<'_>], bases: &[(usize, &str)]) {
    for m in micros.iter_mut() {
        m.batch_ns.sort_by(f64::total_cmp);
    }
    let median = |m: &Micro<'_>| m.batch_ns[m.batch_ns.len() / 2];
    let base_medians: Vec<f64> = bases.iter().map(|(i, _)| median(&micros[*i])).collect();
    let ratio_heads: String = bases.iter().map(|(_, h)| format!(" {h:>9} |")).collect();
    let ratio_rules: String = bases.iter().map(|_| format!("{:->11}|", "")).collect();
    println!(
        "| {:<70} | {:>10} |{ratio_heads} {:>10} | {:>10} | {:>8} |",
        "call", "µs/call", "fastest", "CPU µs", "calls"
    );
    println!(
        "|{:-<72}|{:->12}|{ratio_rules}{:->12}|{:->12}|{:->10}|",
        "", "", "", "", ""
    );
    for m in micros.iter() {
        let ratios: String = base_medians
            .iter()
            .map(|b| format!(" {:>9.3} |", median(m) / b))
            .collect();
        println!(
            "| {:<70} | {:>10.2} |{ratios} {:>10.2} | {:>10.2} | {:>8} |",
            m.label,
            median(m) / 1e3,
            m.batch_ns[0] / 1e3,
            m.cpu.as_secs_f64() * 1e6 / m.calls as f64,
            m.calls,
        );
    }
}
