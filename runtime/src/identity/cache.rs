//! The principal cache: each identity's principal (or the fact that it is not provisioned),
//! kept in the process so that an authenticated request costs no directory lookup.
//!
//! What keeps an entry true:
//!
//! - **Invalidation.** Every change to `users`, `memberships` or `tenants` notifies channel
//!   `tenantry_directory` (migration `0003_directory_notify`); the listener of each [`Db`]
//!   (`db/listen.rs`) receives it and empties this cache whole, which also drops the negative
//!   entries that an inserted user makes wrong. Emptying is a new *generation*: an entry holds
//!   the generation in which its lookup *began*, and only entries of the current generation
//!   count, so a lookup that read the directory before a change and finishes after its
//!   notification is not kept.
//! - **Confirmation, or the TTL.** Beyond its TTL an entry counts only while the listener is
//!   confirmed to be up within the last TTL (a round trip on its connection, after which every
//!   notification committed before it has been received). When the listener is down (or not
//!   started yet, or its network is frozen), the cache is emptied once and entries live at most
//!   the TTL, so a change takes effect within the TTL in every case.
//! - **A hard maximum age.** Whatever the listener says, an entry older than the maximum age
//!   (1 s by default) is looked up again: a change that fires no trigger (made with
//!   `session_replication_role = replica`, as restores and logical replication do) notifies
//!   nobody, and is honoured within it.
//! - **Keys.** An entry is found only by the identity's kind and its exact name as the
//!   authenticator produced it (no case folding): two identities share an entry only if they are
//!   the same string of the same kind, which the directory maps to the same principal.
//!
//! Failed lookups (the directory unavailable) are never cached.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use super::principal::Principal;
use crate::identity::auth::Identity;

/// What the cache knows of one identity.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The principal and the `sub` stored beside it, or `None`: not provisioned.
    pub(crate) found: Option<(Principal, Option<String>)>,
    /// The generation its lookup began in.
    pub(crate) generation: u64,
    at_ms: u64,
}

/// An identity as a key: its kind and its exact name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    service: bool,
    name: String,
}

impl Key {
    fn of(identity: &Identity) -> Self {
        Key {
            service: matches!(identity, Identity::Service { .. }),
            name: identity.email().to_owned(),
        }
    }
}

/// How fresh the principal cache is and what it did ([`crate::db::Db::principal_cache_status`]), for
/// operations and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrincipalCacheStatus {
    /// Whether principals are cached at all (a capacity above zero).
    pub enabled: bool,
    /// Whether the listener is up and was confirmed within the TTL: entries then live until a
    /// change empties the cache; otherwise they live at most the TTL.
    pub listening: bool,
    /// How many times the cache was emptied (a directory change, or the listener going down or
    /// coming back).
    pub invalidations: u64,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the directory.
    pub misses: u64,
}

/// Principals by identity; see the module docs.
#[derive(Debug)]
pub(crate) struct PrincipalCache {
    /// `None` when the capacity is 0: every request looks its principal up.
    entries: Option<Cache<Key, Arc<Entry>>>,
    ttl_ms: u64,
    max_age_ms: u64,
    base: Instant,
    generation: AtomicU64,
    /// Whether the listener is up.
    up: AtomicBool,
    /// When the latest confirmed round trip of the listener began (ms since `base`).
    confirmed_ms: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl PrincipalCache {
    /// A cache of at most `capacity` identities (0: no cache) whose entries live `ttl` when the
    /// listener is not confirmed up, and never longer than `max_age`.
    pub(crate) fn new(capacity: usize, ttl: Duration, max_age: Duration) -> Self {
        let entries = crate::identity::bounded::bounded_cache(capacity);
        PrincipalCache {
            entries,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
            base: Instant::now(),
            generation: AtomicU64::new(0),
            up: AtomicBool::new(false),
            confirmed_ms: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether principals are cached at all.
    pub(crate) fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The TTL of entries while the listener is not confirmed up.
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn confirmed_within_ttl(&self, now: u64) -> bool {
        self.up.load(Ordering::Acquire)
            && now.saturating_sub(self.confirmed_ms.load(Ordering::Acquire)) < self.ttl_ms
    }

    /// The cached entry of `identity`, if it is still valid.
    pub(crate) fn get(&self, identity: &Identity) -> Option<Arc<Entry>> {
        let entries = self.entries.as_ref()?;
        let found = entries.get(&Key::of(identity)).filter(|entry| {
            let now = self.now_ms();
            let age = now.saturating_sub(entry.at_ms);
            entry.generation == self.generation.load(Ordering::Acquire)
                && age < self.max_age_ms
                && (age < self.ttl_ms || self.confirmed_within_ttl(now))
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The generation a lookup begins in: pass it to [`PrincipalCache::insert`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches what a lookup that began in `generation` found, unless the cache was emptied
    /// since (the lookup may have read the directory before the change).
    pub(crate) fn insert(
        &self,
        identity: &Identity,
        found: Option<(Principal, Option<String>)>,
        generation: u64,
    ) {
        let Some(entries) = &self.entries else {
            return;
        };
        let entry = Arc::new(Entry {
            found,
            generation,
            at_ms: self.now_ms(),
        });
        if generation == self.generation() {
            entries.insert(Key::of(identity), entry);
            // Emptied meanwhile: the entry may be older than the change; never keep it.
            if generation != self.generation() {
                entries.remove(&Key::of(identity));
            }
        }
    }

    /// Empties the cache: the directory changed, or changes may have been missed.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    /// The listener is up, and every notification committed before `sent` (a round trip it
    /// began then and that has been answered) has been received.
    pub(crate) fn confirmed(&self, sent: Instant) {
        let at = u64::try_from(sent.saturating_duration_since(self.base).as_millis())
            .unwrap_or(u64::MAX);
        self.confirmed_ms.fetch_max(at, Ordering::AcqRel);
        self.up.store(true, Ordering::Release);
    }

    /// The listener is down: notifications may be missed from now on, so the cache is emptied
    /// and entries live at most the TTL until it is confirmed up again.
    pub(crate) fn listener_down(&self) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.invalidate();
        }
    }

    /// How fresh the cache is and what it did.
    pub(crate) fn status(&self) -> PrincipalCacheStatus {
        PrincipalCacheStatus {
            enabled: self.is_enabled(),
            listening: self.confirmed_within_ttl(self.now_ms()),
            invalidations: self.generation(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn user(email: &str) -> Identity {
        Identity::User {
            email: email.into(),
            sub: None,
        }
    }

    fn principal(email: &str) -> Option<(Principal, Option<String>)> {
        Some((Principal::for_cache_tests(Uuid::new_v4(), email), None))
    }

    #[test]
    fn keys_are_exact_and_kinds_apart() {
        let cache = PrincipalCache::new(100, Duration::from_secs(60), Duration::from_secs(600));
        cache.insert(&user("ada@example.com"), principal("ada@example.com"), 0);
        assert!(cache.get(&user("ada@example.com")).is_some());
        assert!(
            cache.get(&user("Ada@example.com")).is_none(),
            "no case folding"
        );
        assert!(cache.get(&user("ada@example.com ")).is_none());
        let service = Identity::Service {
            common_name: "ada@example.com".into(),
        };
        assert!(
            cache.get(&service).is_none(),
            "a service token is another key"
        );
    }

    #[test]
    fn a_lookup_that_began_before_an_invalidation_is_not_kept() {
        let cache = PrincipalCache::new(100, Duration::from_secs(60), Duration::from_secs(600));
        let generation = cache.generation();
        cache.invalidate();
        cache.insert(
            &user("ada@example.com"),
            principal("ada@example.com"),
            generation,
        );
        assert!(cache.get(&user("ada@example.com")).is_none());
    }

    #[test]
    fn invalidation_drops_positive_and_negative_entries() {
        let cache = PrincipalCache::new(100, Duration::from_secs(60), Duration::from_secs(600));
        cache.insert(&user("ada@example.com"), principal("ada@example.com"), 0);
        cache.insert(&user("bob@example.com"), None, 0);
        assert!(cache.get(&user("bob@example.com")).is_some());
        cache.invalidate();
        assert!(cache.get(&user("ada@example.com")).is_none());
        assert!(cache.get(&user("bob@example.com")).is_none());
    }

    // The sleeps below leave hundreds of milliseconds between what is asserted and the bound it
    // depends on, so that a preempted test thread cannot turn a hit into a miss or back.

    #[test]
    fn without_a_confirmed_listener_entries_live_the_ttl() {
        let cache = PrincipalCache::new(100, Duration::from_millis(500), Duration::from_secs(600));
        cache.insert(&user("ada@example.com"), principal("ada@example.com"), 0);
        assert!(cache.get(&user("ada@example.com")).is_some());
        std::thread::sleep(Duration::from_millis(550));
        assert!(cache.get(&user("ada@example.com")).is_none());
    }

    #[test]
    fn a_confirmed_listener_keeps_entries_beyond_the_ttl_until_it_goes_down() {
        let cache = PrincipalCache::new(100, Duration::from_millis(1000), Duration::from_secs(600));
        cache.confirmed(Instant::now());
        cache.insert(&user("ada@example.com"), principal("ada@example.com"), 0);
        std::thread::sleep(Duration::from_millis(700));
        cache.confirmed(Instant::now());
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            cache.get(&user("ada@example.com")).is_some(),
            "older than the TTL, but the listener was confirmed since"
        );
        assert!(cache.status().listening);
        cache.listener_down();
        assert!(!cache.status().listening);
        assert!(
            cache.get(&user("ada@example.com")).is_none(),
            "dropped when the listener went down"
        );
    }

    #[test]
    fn a_listener_not_confirmed_within_the_ttl_no_longer_extends_entries() {
        let cache = PrincipalCache::new(100, Duration::from_millis(300), Duration::from_secs(600));
        cache.confirmed(Instant::now());
        cache.insert(&user("ada@example.com"), principal("ada@example.com"), 0);
        std::thread::sleep(Duration::from_millis(350));
        assert!(!cache.status().listening);
        assert!(cache.get(&user("ada@example.com")).is_none());
    }

    #[test]
    fn no_entry_outlives_the_maximum_age_even_with_a_confirmed_listener() {
        let cache = PrincipalCache::new(100, Duration::from_secs(60), Duration::from_millis(300));
        cache.confirmed(Instant::now());
        cache.insert(&user("ada@example.com"), principal("ada@example.com"), 0);
        assert!(cache.get(&user("ada@example.com")).is_some());
        std::thread::sleep(Duration::from_millis(350));
        cache.confirmed(Instant::now());
        assert!(cache.status().listening);
        assert!(cache.get(&user("ada@example.com")).is_none());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = PrincipalCache::new(0, Duration::from_secs(60), Duration::from_secs(600));
        cache.insert(&user("ada@example.com"), principal("ada@example.com"), 0);
        assert!(cache.get(&user("ada@example.com")).is_none());
        assert!(!cache.status().enabled);
    }
}
