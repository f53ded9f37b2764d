//! [`TestClock`]: a monotonic clock that stands still until the test moves it, for the parts of
//! tenantry that age state by time (the Cloudflare key cache's TTL, cooldown and staleness limit).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A clock that moves only when told to ([`TestClock::advance`]). Cheap to clone: every clone is
/// the same clock.
///
/// Give it to [`CloudflareVerifier::with_clock`](crate::identity::auth::cloudflare::CloudflareVerifier::with_clock)
/// and its key cache ages its key set by this clock instead of the system's: a test moves past
/// the refetch cooldown or the cache TTL at once, without sleeping, and no time passes for the
/// cache while the test runs (a cooldown cannot run out on a slow machine by itself). Timeouts,
/// HTTP and everything else keep the real clock.
///
/// ```
/// use std::time::Duration;
/// use tenantry_runtime::testing::TestClock;
///
/// let clock = TestClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(300));
/// assert_eq!(clock.now() - start, Duration::from_secs(300));
/// ```
#[derive(Debug, Clone)]
pub struct TestClock {
    now: Arc<Mutex<Instant>>,
}

impl TestClock {
    /// A clock reading the system's monotonic clock of this moment, standing still from here.
    pub fn new() -> Self {
        TestClock {
            now: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Moves the clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }

    /// What the clock reads now.
    pub fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for TestClock {
    fn default() -> Self {
        TestClock::new()
    }
}
