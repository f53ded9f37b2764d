//! The cache of verified tokens: tokens that passed every check, keyed by a keyed hash of their
//! exact bytes, each kept no longer than its `exp` (with the leeway) and bounded in number.
//!
//! A browser sends the same token with every request of a session, so a hit saves the RSA check
//! and the claim checks. What makes a hit safe:
//!
//! - only a token that passed every check is inserted, and the key is the digest of all of its
//!   bytes, signature included: a token differing in any byte (a forged signature, an edited
//!   claim) has another digest, misses, and goes through the full verification. The digest is
//!   SipHash-2-4 with a 128-bit output under a 128-bit key drawn from the operating system's
//!   random source for each cache and never shown: SipHash is a pseudorandom function, so
//!   without the key a token made to share a cached token's digest takes about 2^128 / (cached
//!   tokens) tries, each a request. (SHA-256 needs no secret for that, but costs eight times as
//!   much per request on a browser's 900-byte token: BENCHMARKS.md, issue 18.) If no random key
//!   can be drawn, nothing is cached and every token is verified;
//! - `exp` and `nbf` are checked again on every hit, against the clock of that moment, with the
//!   verifier's leeway, exactly as jsonwebtoken checks them (so an entry dies at `exp + leeway`,
//!   and a clock stepped back cannot make a hit out of a not-yet-valid token);
//! - the verifier looks the token's key up on every hit, as for a cold token (the same staleness
//!   rules, the same refetch on an unknown `kid`), and refuses the hit unless the key set still
//!   holds the very key that verified it: an entry dies with its key.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use quick_cache::sync::Cache;

use crate::identity::auth::{AuthError, Identity};

/// SipHash-2-4-128 of a token's exact bytes under the cache's secret key.
pub(crate) type TokenDigest = u128;

/// The secret key of a cache's digests; its `Debug` shows no byte of it (the verifier, and so the
/// cache, may be logged with `{:?}`).
struct DigestKey([u8; 16]);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

/// What a successful verification leaves behind.
#[derive(Debug)]
pub(crate) struct Verified {
    /// The identity the token verified to.
    pub(crate) identity: Identity,
    /// The token's `kid`.
    pub(crate) kid: String,
    /// The key that verified its signature.
    pub(crate) key: Arc<DecodingKey>,
    /// The token's `exp`.
    pub(crate) exp: u64,
    /// The token's `nbf`, if it has one.
    pub(crate) nbf: Option<u64>,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Not cached (or the cache is off): verify the token.
    Miss,
    /// Verified before and still within `exp` and `nbf`: check its key, then accept it.
    Hit(Arc<Verified>),
    /// Verified before, but expired (the entry is gone) or not valid yet at this clock.
    Refused(AuthError),
}

/// Verified tokens by digest; at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct TokenCache {
    /// `None` when the configured capacity is 0, or no key could be drawn: every token is
    /// verified.
    entries: Option<Cache<TokenDigest, Arc<Verified>>>,
    /// The digests' secret key.
    key: DigestKey,
    /// The verifier's leeway on `exp` and `nbf`, in seconds.
    leeway: u64,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: no cache) for a verifier with `leeway`.
    pub(crate) fn new(capacity: usize, leeway: Duration) -> Self {
        let key = ring::rand::generate::<[u8; 16]>(&ring::rand::SystemRandom::new())
            .map(|key| key.expose())
            .ok();
        if key.is_none() && capacity > 0 {
            tracing::warn!("no random key for the token cache: every token is verified");
        }
        let entries = key.and_then(|_| crate::identity::bounded::bounded_cache(capacity));
        TokenCache {
            entries,
            key: DigestKey(key.unwrap_or_default()),
            leeway: leeway.as_secs(),
        }
    }

    /// The digest `token` is cached under.
    pub(crate) fn digest(&self, token: &str) -> TokenDigest {
        let mut hasher = siphasher::sip128::SipHasher24::new_with_key(&self.key.0);
        std::hash::Hasher::write(&mut hasher, token.as_bytes());
        siphasher::sip128::Hasher128::finish128(&hasher).as_u128()
    }

    /// Whether tokens are cached at all.
    pub(crate) fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The entry for `digest` if it is still valid at `now` (Unix seconds). An expired entry is
    /// removed and refused with the reason a cold verification gives.
    pub(crate) fn lookup(&self, digest: &TokenDigest, now: u64) -> Lookup {
        let Some(entry) = self.entries.as_ref().and_then(|e| e.get(digest)) else {
            return Lookup::Miss;
        };
        // jsonwebtoken: expired when `exp < now - leeway`, immature when `nbf > now + leeway`.
        if entry.exp.saturating_add(self.leeway) < now {
            self.remove(digest);
            return Lookup::Refused(AuthError::unauthenticated("token expired"));
        }
        if entry
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Lookup::Refused(AuthError::unauthenticated("token not yet valid (nbf)"));
        }
        Lookup::Hit(entry)
    }

    /// Caches a token that passed every check.
    pub(crate) fn insert(&self, digest: TokenDigest, verified: Verified) {
        if let Some(entries) = &self.entries {
            entries.insert(digest, Arc::new(verified));
        }
    }

    /// Forgets one token.
    pub(crate) fn remove(&self, digest: &TokenDigest) {
        if let Some(entries) = &self.entries {
            entries.remove(digest);
        }
    }

    /// Forgets every token.
    pub(crate) fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    /// How many tokens are cached.
    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }

    /// The most tokens the cache holds (at most the configured capacity).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.entries
            .as_ref()
            .map_or(0, |e| usize::try_from(e.capacity()).unwrap_or(usize::MAX))
    }
}

/// Whether `a` and `b` are the same public key (the same `Arc`, or equal key material).
pub(crate) fn same_key(a: &Arc<DecodingKey>, b: &Arc<DecodingKey>) -> bool {
    if Arc::ptr_eq(a, b) {
        return true;
    }
    a.family() == b.family()
        && match (a.kind(), b.kind()) {
            (
                DecodingKeyKind::RsaModulusExponent { n, e },
                DecodingKeyKind::RsaModulusExponent { n: n2, e: e2 },
            ) => n == n2 && e == e2,
            (DecodingKeyKind::SecretOrDer(x), DecodingKeyKind::SecretOrDer(y)) => x == y,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEEWAY: u64 = 30;
    const T0: u64 = 1_800_000_000;

    fn key(n: &[u8]) -> Arc<DecodingKey> {
        Arc::new(DecodingKey::from_rsa_raw_components(n, &[1, 0, 1]))
    }

    fn verified(exp: u64, nbf: Option<u64>) -> Verified {
        Verified {
            identity: Identity::User {
                email: "ada@example.com".into(),
                sub: None,
            },
            kid: "k".into(),
            key: key(b"n"),
            exp,
            nbf,
        }
    }

    fn cache(capacity: usize) -> TokenCache {
        TokenCache::new(capacity, Duration::from_secs(LEEWAY))
    }

    fn reason(lookup: Lookup) -> String {
        match lookup {
            Lookup::Refused(AuthError::Unauthenticated(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_lives_until_exp_plus_the_leeway_and_not_one_second_more() {
        let cache = cache(100);
        let d = cache.digest("a.b.c");
        cache.insert(d, verified(T0, None));
        assert!(matches!(cache.lookup(&d, T0 - 600), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(&d, T0 + LEEWAY), Lookup::Hit(_)));
        assert_eq!(reason(cache.lookup(&d, T0 + LEEWAY + 1)), "token expired");
        // The expired entry is gone: even an earlier clock now misses.
        assert!(matches!(cache.lookup(&d, T0), Lookup::Miss));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn nbf_is_checked_again_on_every_hit() {
        let cache = cache(100);
        let d = cache.digest("a.b.c");
        cache.insert(d, verified(T0 + 3600, Some(T0)));
        assert!(matches!(cache.lookup(&d, T0 - LEEWAY), Lookup::Hit(_)));
        // A clock stepped back past the leeway: not valid yet, as a cold verification would say.
        assert_eq!(
            reason(cache.lookup(&d, T0 - LEEWAY - 1)),
            "token not yet valid (nbf)"
        );
        assert!(matches!(cache.lookup(&d, T0), Lookup::Hit(_)));
    }

    #[test]
    fn the_key_is_the_digest_of_every_byte() {
        let cache = cache(100);
        cache.insert(cache.digest("h.p.sig"), verified(T0, None));
        for other in ["h.p.siG", "h.p.sig ", "h.P.sig", "h.p.si"] {
            assert!(matches!(
                cache.lookup(&cache.digest(other), T0),
                Lookup::Miss
            ));
        }
        assert!(matches!(
            cache.lookup(&cache.digest("h.p.sig"), T0),
            Lookup::Hit(_)
        ));
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        for capacity in [1, 7, 64, 100, 1000, 10_000] {
            let cache = cache(capacity);
            assert!(cache.capacity() <= capacity, "{capacity}");
            assert!(cache.capacity() * 10 >= capacity * 9, "{capacity}");
            for i in 0..capacity * 3 {
                cache.insert(cache.digest(&i.to_string()), verified(T0, None));
                assert!(cache.len() <= capacity, "{capacity}: {}", cache.len());
            }
            // The newest entry survives the evictions.
            let last = cache.digest(&(capacity * 3 - 1).to_string());
            assert!(matches!(cache.lookup(&last, T0), Lookup::Hit(_)));
        }
    }

    #[test]
    fn each_cache_draws_its_own_key() {
        // The digest is keyed: two caches (two verifiers, two processes) hash one token apart,
        // so nothing outside a cache can compute the digest its entries are kept under.
        let (a, b) = (cache(100), cache(100));
        assert_ne!(a.key.0, [0; 16]);
        assert_ne!(a.key.0, b.key.0);
        assert_ne!(a.digest("h.p.sig"), b.digest("h.p.sig"));
        assert_eq!(a.digest("h.p.sig"), a.digest("h.p.sig"));
        // Never shown: not in the cache's `Debug`.
        let shown = format!("{a:?}");
        assert!(shown.contains("DigestKey(..)"), "{shown}");
        assert!(!shown.contains(&format!("{:?}", a.key.0)), "{shown}");
    }

    #[test]
    fn capacity_zero_turns_the_cache_off() {
        let cache = cache(0);
        assert!(!cache.is_enabled());
        cache.insert(cache.digest("a"), verified(T0, None));
        assert!(matches!(cache.lookup(&cache.digest("a"), T0), Lookup::Miss));
        assert_eq!((cache.len(), cache.capacity()), (0, 0));
    }

    #[test]
    fn same_key_compares_key_material() {
        let a = key(b"modulus");
        assert!(same_key(&a, &a));
        assert!(same_key(&a, &key(b"modulus")));
        assert!(!same_key(&a, &key(b"other")));
        assert!(!same_key(
            &a,
            &Arc::new(DecodingKey::from_secret(b"modulus"))
        ));
    }
}
