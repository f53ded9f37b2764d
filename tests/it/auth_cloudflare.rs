//! Cloudflare Access verification, end to end: tokens minted with the test keys, keys served by a
//! real local certs server over HTTP, requests through a real axum router.
//!
//! Cases follow "Cases to test" in the Cloudflare Access reference: `tokens` (claims and
//! headers), `requests` (where the token is found), `keys` (the key cache and the certs endpoint),
//! and `cache` (the cache of verified tokens).

mod cache;
mod keys;
mod requests;
mod tokens;

use std::future::Future;
use std::time::Duration;

use tenantry::auth::cloudflare::{CloudflareConfig, CloudflareVerifier};
use tenantry::auth::{AuthError, Identity};
use tenantry::testing::{CertsServer, TestClock, TestKey, TestToken, TokenMinter};

/// The team domain every test uses.
const TEAM: &str = "tenantry-test.cloudflareaccess.com";
/// The audience tag every test uses.
const AUD: &str = "4714c1358e65fe4b408ad6d432a5f878d1a8ec4e3cbbdb6d7b1a3e1b8c0d9f2a";
/// Longest any single verification may take in these tests: nothing may hang.
const BOUND: Duration = Duration::from_secs(5);

/// A certs server serving [`TestKey::A`], a verifier using it with short timings, the clock its
/// key cache ages by, and a minter.
struct Env {
    server: CertsServer,
    config: CloudflareConfig,
    clock: TestClock,
    verifier: CloudflareVerifier,
    minter: TokenMinter,
}

impl Env {
    async fn new() -> Env {
        Env::with(|_| {}).await
    }

    /// Like [`Env::new`], with `tune` applied to the config first.
    async fn with(tune: impl FnOnce(&mut CloudflareConfig)) -> Env {
        let server = CertsServer::start(&[&TestKey::A])
            .await
            .expect("certs server starts");
        let mut config = fast_config(&server.url());
        tune(&mut config);
        let clock = TestClock::new();
        let verifier =
            CloudflareVerifier::with_clock(config.clone(), clock.clone()).expect("valid config");
        let minter = TokenMinter::for_config(&config, &TestKey::A);
        Env {
            server,
            config,
            clock,
            verifier,
            minter,
        }
    }

    /// A user token for `ada@example.com`, signed by key A, to adjust and sign.
    fn ada(&self) -> TestToken {
        self.minter.user("ada@example.com")
    }

    /// Verifies `token`, failing the test if it takes longer than [`BOUND`].
    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        bounded(self.verifier.verify(token)).await
    }

    /// The reason `token` is refused; fails the test if it is accepted or refused otherwise.
    async fn refused(&self, token: &str) -> String {
        match self.verify(token).await {
            Err(AuthError::Unauthenticated(reason)) => reason,
            other => panic!("expected 401, got {other:?} for {token}"),
        }
    }

    /// The email of the identity `token` verifies to; fails the test if it is refused.
    async fn accepted(&self, token: &str) -> String {
        match self.verify(token).await {
            Ok(identity) => identity.email().to_owned(),
            Err(error) => panic!("expected the token to verify, got {error:?}"),
        }
    }

    /// Moves the key cache's clock past the refetch cooldown.
    fn after_cooldown(&self) {
        self.pass(self.config.refetch_cooldown);
    }

    /// `by` passes for the key cache at once, without a sleep: its clock stands still except
    /// when a test moves it, so no TTL or cooldown runs out by itself on a slow machine. Only
    /// that clock moves: a fetch in flight is not hurried.
    fn pass(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// Short timings so the suite stays fast; every other setting is the default.
///
/// The fetch timeout is generous: the local certs server answers in milliseconds, but on a
/// loaded machine a fetch that should succeed took longer than 500 ms, failed, and left the
/// known keys in place, so a test waiting for that fetch saw the old key set. Tests of a slow
/// endpoint measure against this value (`known_keys_survive`) or set their own.
fn fast_config(certs_url: &str) -> CloudflareConfig {
    let config = CloudflareConfig {
        fetch_timeout: Duration::from_secs(2),
        refetch_cooldown: Duration::from_millis(300),
        ..CloudflareConfig::new(TEAM, AUD).expect("valid team domain")
    };
    config.with_certs_url(certs_url).expect("valid certs url")
}

/// Awaits `future`, failing the test if it takes longer than [`BOUND`].
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("did not finish in time: something hangs")
}
