//! The monotonic clock of the parts that age state by time (the Cloudflare key cache): the
//! system's, or with the `testing` feature a `TestClock` (public as `testing::TestClock`) that a
//! test moves by hand instead of sleeping.

use std::time::{Duration, Instant};

/// Where the time comes from.
#[derive(Debug, Clone, Default)]
pub(crate) enum Clock {
    /// The system's monotonic clock ([`Instant::now`]).
    #[default]
    System,
    /// A clock that moves only when the test advances it.
    #[cfg(feature = "testing")]
    Test(TestClock),
}

impl Clock {
    /// The time now.
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            #[cfg(feature = "testing")]
            Clock::Test(clock) => clock.now(),
        }
    }

    /// How long ago `earlier` was (zero if it reads as later than now).
    pub(crate) fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

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
#[cfg(feature = "testing")]
#[derive(Debug, Clone)]
pub struct TestClock {
    now: std::sync::Arc<std::sync::Mutex<Instant>>,
}

#[cfg(feature = "testing")]
impl TestClock {
    /// A clock reading the system's monotonic clock of this moment, standing still from here.
    pub fn new() -> Self {
        TestClock {
            now: std::sync::Arc::new(std::sync::Mutex::new(Instant::now())),
        }
    }

    /// Moves the clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += by;
    }

    /// What the clock reads now.
    pub fn now(&self) -> Instant {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(feature = "testing")]
impl Default for TestClock {
    fn default() -> Self {
        TestClock::new()
    }
}
