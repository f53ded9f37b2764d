//! The identity layer: principals (and their cache), tenant selection, roles and the axum
//! extractors that `#[requires_role(..)]` expands to. Who makes the request (the authenticators
//! of each mode) is `crate::identity::auth`'s.
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
