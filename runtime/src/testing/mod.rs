//! Test kit for applications built on tenantry (cargo feature `testing`; never enable it in a
//! production build): the fixture of `#[tenantry::test]` ([`TestDb`]: a migrated scratch
//! database with two tenants, a partner and a viewer each), a local Cloudflare Access certs
//! endpoint, fixed test keys, a minter of Cloudflare-shaped tokens, scratch databases, a
//! fault-injection TCP proxy ([`FaultProxy`]) to freeze, cut or delay the path to PostgreSQL,
//! and PgBouncer in transaction mode in front of the test server ([`PgBouncer`]), so your tests
//! exercise the real verifier over real HTTP and your app against a failing network and behind a
//! transaction pooler.
//!
//! ```no_run
//! use tenantry_runtime::identity::auth::cloudflare::{CloudflareConfig, CloudflareVerifier};
//! use tenantry_runtime::testing::{CertsServer, TestKey, TokenMinter};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let certs = CertsServer::start(&[&TestKey::A]).await?;
//! let config = CloudflareConfig::new("test.cloudflareaccess.com", "test-aud")?
//!     .with_certs_url(certs.url())?;
//! let verifier = CloudflareVerifier::new(config.clone())?;
//! let minter = TokenMinter::for_config(&config, &TestKey::A);
//!
//! let user = verifier.verify(&minter.user("ada@example.com").sign()).await?;
//! assert_eq!(user.email(), "ada@example.com");
//! let expired = minter.user("ada@example.com").expires_in(-3600).sign();
//! assert_eq!(verifier.verify(&expired).await.unwrap_err().status(), 401);
//! # Ok(()) }
//! ```
//!
//! In the application, point `TENANTRY_CF_CERTS_URL` at [`CertsServer::url`] and send the
//! minted token in the `Cf-Access-Jwt-Assertion` header.

mod certs_server;
mod cluster;
mod harness;
#[doc(hidden)]
pub mod isolation;
mod keys;
mod minter;
mod pgbouncer;
mod proxy;
mod scratch;
mod template;
mod wire;

#[doc(inline)]
pub use crate::assert_isolated;
pub use crate::clock::TestClock;
pub use crate::on_both_routes;
pub use certs_server::{CertsBehaviour, CertsServer};
pub use cluster::{lock_citus_setup, on_citus, CitusSetupLock};
pub use harness::{
    begin_tenant, jobs_for_test, run_test, NoMigrations, TestDb, TestFn, TestTenant, TestUser,
};
pub use keys::{certs_document, TestKey};
pub use minter::{TestToken, TokenMinter};
pub use pgbouncer::{PgBouncer, Route};
pub use proxy::{Fault, FaultProxy};
pub use scratch::{connect_superuser, database_url, server_url, ScratchDatabase, ScratchRole};
pub use wire::Executed;
