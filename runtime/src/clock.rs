//! The monotonic clock of the parts that age state by time (the Cloudflare key cache): the
//! system's, or with the `testing` feature a [`TestClock`](crate::testing::TestClock) that a test
//! moves by hand instead of sleeping.

use std::time::{Duration, Instant};

/// Where the time comes from.
#[derive(Debug, Clone, Default)]
pub(crate) enum Clock {
    /// The system's monotonic clock ([`Instant::now`]).
    #[default]
    System,
    /// A clock that moves only when the test advances it.
    #[cfg(feature = "testing")]
    Test(crate::testing::TestClock),
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
