//! The key cache: `kid → DecodingKey` from the certs endpoint, refreshed after `cache_ttl`, refetched
//! on an unknown `kid` at most once per cooldown (one fetch shared by all concurrent callers), and
//! kept serving known keys for `max_staleness` when the endpoint stops answering.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::fetch::{Fetcher, KeyMap};
use super::{CloudflareConfig, CloudflareConfigError};
use crate::clock::Clock;
use crate::identity::auth::AuthError;

/// What the cache holds between fetches.
#[derive(Debug, Default)]
struct CacheState {
    keys: Arc<KeyMap>,
    /// When the last fetch succeeded (`None`: never).
    fetched_at: Option<Instant>,
    /// When the last fetch ended, successful or not (the cooldown runs from here).
    attempted_at: Option<Instant>,
}

/// The signing keys of one Cloudflare Access team.
#[derive(Debug)]
pub(crate) struct KeyCache {
    fetcher: Fetcher,
    /// What the key set's age, the TTL and the cooldown are measured with (the system's clock;
    /// a test's `testing::TestClock` under the `testing` feature).
    clock: Clock,
    ttl: Duration,
    cooldown: Duration,
    max_staleness: Duration,
    state: RwLock<CacheState>,
    /// Held by the one task fetching; others wait, then find the fresh result (single flight).
    refresh: Arc<Mutex<()>>,
    fetches: AtomicU64,
    /// Fetches that ended (their keys, if any, in place), and a wake-up for each.
    ended: AtomicU64,
    ended_notify: tokio::sync::Notify,
}

impl KeyCache {
    /// An empty cache for `config`, aging by `clock`; nothing is fetched until a key is needed.
    pub(crate) fn new(
        config: &CloudflareConfig,
        clock: Clock,
    ) -> Result<Self, CloudflareConfigError> {
        Ok(KeyCache {
            fetcher: Fetcher::new(config)?,
            clock,
            ttl: config.cache_ttl,
            cooldown: config.refetch_cooldown,
            max_staleness: config.max_staleness,
            state: RwLock::new(CacheState::default()),
            refresh: Arc::new(Mutex::new(())),
            fetches: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            ended_notify: tokio::sync::Notify::new(),
        })
    }

    /// How many fetches of the certs document were started, successful or not.
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Waits until `n` fetches have ended, each with its keys (if it got any) in place.
    pub(crate) async fn fetches_ended(&self, n: u64) {
        loop {
            let woken = self.ended_notify.notified();
            if self.ended.load(Ordering::Acquire) >= n {
                return;
            }
            woken.await;
        }
    }

    /// The key ids currently cached.
    pub(crate) fn known_kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.read(|s| s.keys.keys().cloned().collect());
        kids.sort();
        kids
    }

    /// The key for `kid`. A known key younger than `cache_ttl` is returned at once; an older one
    /// (younger than `max_staleness`) too, with a refresh started in the background. An unknown
    /// `kid`, or keys older than `max_staleness`, wait for one refresh (unless one ended less than
    /// a cooldown ago) and fail closed if that does not produce a usable key.
    pub(crate) async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let (Some(key), Some(age)) = self.lookup(kid) {
            if age < self.ttl {
                return Ok(key);
            }
            if age < self.max_staleness {
                self.refresh_in_background();
                return Ok(key);
            }
        }
        self.refresh().await;
        match self.lookup(kid) {
            (Some(key), Some(age)) if age < self.max_staleness => Ok(key),
            (Some(_), _) => Err(AuthError::unauthenticated(
                "signing keys are too old: the certs endpoint has not answered",
            )),
            (None, None) => Err(AuthError::unauthenticated(
                "no signing keys could be fetched yet",
            )),
            (None, Some(_)) => Err(AuthError::unauthenticated("unknown signing key id")),
        }
    }

    /// Fetches now unless a fetch ended less than a cooldown ago; waits for one in flight.
    pub(crate) async fn refresh(&self) {
        if !self.cooldown_over() {
            return;
        }
        let guard = Arc::clone(&self.refresh).lock_owned().await;
        self.refresh_locked(guard).await;
    }

    /// Whether a fetch has ever succeeded.
    pub(crate) fn has_keys(&self) -> bool {
        self.read(|s| s.fetched_at.is_some())
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if !self.cooldown_over() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // not on a Tokio runtime: the next unknown kid or max_staleness refreshes
        };
        let Ok(guard) = Arc::clone(&self.refresh).try_lock_owned() else {
            return; // a fetch is already in flight
        };
        let this = Arc::clone(self);
        runtime.spawn(async move { this.refresh_locked(guard).await });
    }

    async fn refresh_locked(&self, guard: OwnedMutexGuard<()>) {
        // Re-check under the lock: whoever held it before us may have just fetched.
        if !self.cooldown_over() {
            return;
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetcher.fetch().await;
        let now = self.clock.now();
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.attempted_at = Some(now);
        match result {
            Ok(keys) => {
                tracing::debug!(
                    url = self.fetcher.url(),
                    keys = keys.len(),
                    "fetched Cloudflare Access keys"
                );
                state.keys = Arc::new(keys);
                state.fetched_at = Some(now);
            }
            Err(error) => {
                tracing::warn!(url = self.fetcher.url(), %error, "could not fetch Cloudflare Access keys; keeping the known ones");
            }
        }
        drop(state);
        self.ended.fetch_add(1, Ordering::AcqRel);
        self.ended_notify.notify_waiters();
        drop(guard);
    }

    fn cooldown_over(&self) -> bool {
        self.read(|s| {
            s.attempted_at
                .is_none_or(|at| self.clock.since(at) >= self.cooldown)
        })
    }

    /// The cached key for `kid` (if any) and the age of the key set (`None`: never fetched).
    fn lookup(&self, kid: &str) -> (Option<Arc<DecodingKey>>, Option<Duration>) {
        self.read(|s| {
            (
                s.keys.get(kid).cloned(),
                s.fetched_at.map(|at| self.clock.since(at)),
            )
        })
    }

    fn read<T>(&self, f: impl FnOnce(&CacheState) -> T) -> T {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }
}
