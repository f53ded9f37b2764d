//! [`Outage`]: one log line when the database becomes unavailable, a summary at most every
//! [`SUMMARY_EVERY`] while it stays so, and one line when it answers again — instead of one
//! error line per failed request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two "still unavailable" lines of one outage.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The availability of one pool, as seen by the requests that use it.
#[derive(Debug)]
pub(crate) struct Outage {
    pool: &'static str,
    down: AtomicBool,
    state: Mutex<Option<Down>>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    failures: u64,
    summarised_at: Instant,
    summarised: u64,
}

impl Outage {
    pub(crate) fn new(pool: &'static str) -> Self {
        Outage {
            pool,
            down: AtomicBool::new(false),
            state: Mutex::new(None),
        }
    }

    /// A request could not use the database because of `error`.
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match state.as_mut() {
            None => {
                self.down.store(true, Ordering::Release);
                *state = Some(Down {
                    since: now,
                    failures: 1,
                    summarised_at: now,
                    summarised: 1,
                });
                tracing::error!(
                    pool = self.pool,
                    %error,
                    "database unavailable: requests answer 503 until it recovers; further failures are summarised every {} s",
                    SUMMARY_EVERY.as_secs()
                );
            }
            Some(down) => {
                down.failures += 1;
                if now.duration_since(down.summarised_at) >= SUMMARY_EVERY {
                    tracing::warn!(
                        pool = self.pool,
                        %error,
                        failed_requests = down.failures - down.summarised,
                        for_secs = now.duration_since(down.since).as_secs(),
                        "database still unavailable"
                    );
                    down.summarised_at = now;
                    down.summarised = down.failures;
                }
            }
        }
    }

    /// A request used the database successfully.
    pub(crate) fn succeeded(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(down) = state.take() {
            self.down.store(false, Ordering::Release);
            tracing::info!(
                pool = self.pool,
                failed_requests = down.failures,
                after_ms = down.since.elapsed().as_millis() as u64,
                "database available again"
            );
        }
    }
}
