//! Who asks: the authentication modes (`auth/`), principals and their memberships, the principal
//! cache and the listener that keeps it true (`cache.rs`, `listen.rs`), the directory's SQL,
//! roles and their proofs, and the CSRF policy. The extractors that put these together for a
//! request, with the database, are `crate::extract`'s.
//!
//! | role | from | inside a tenant | across tenants |
//! |---|---|---|---|
//! | `Owner` | `users.is_owner` | read and write in any tenant | audited bypass (`no_tenant_scope!`) |
//! | `Partner` | membership `partner` | read and write in its tenants | no |
//! | `ClientViewer` | membership `client_viewer` | read only (`READ ONLY` transactions) | no |

pub mod auth;
pub(crate) mod bounded;
mod cache;
mod csrf;
pub(crate) mod directory;
pub(crate) mod listen;
pub(crate) mod principal;
mod roles;

pub(crate) use cache::PrincipalCache;
pub use cache::PrincipalCacheStatus;
pub use csrf::{csrf, CsrfPolicy};
pub use principal::{Membership, Principal, TenantRole};
pub use roles::{ClientViewer, Owner, OwnerProof, Partner, Proof, Role, TenantRoleRequirement};
