//! The identity layer: principals (and their cache), tenant selection, roles and the axum
//! extractors that `#[requires_role(..)]` expands to. Who makes the request (the authenticators
//! of each mode) is `crate::auth`'s.
//!
//! | role | from | inside a tenant | across tenants |
//! |---|---|---|---|
//! | `Owner` | `users.is_owner` | read and write in any tenant | audited bypass (`no_tenant_scope!`) |
//! | `Partner` | membership `partner` | read and write in its tenants | no |
//! | `ClientViewer` | membership `client_viewer` | read only (`READ ONLY` transactions) | no |

mod cache;
mod csrf;
mod directory;
mod extract;
pub(crate) mod life;
pub(crate) mod params;
mod principal;
mod roles;
mod tenant;

// The authenticators live in `crate::auth`; these paths are kept for existing imports.
pub use crate::auth::{mark_dev_mode, Authenticator, DEV_USER_HEADER, TRUSTED_EMAIL_HEADER};
pub(crate) use cache::PrincipalCache;
pub use cache::PrincipalCacheStatus;
pub use csrf::{csrf, CsrfPolicy};
pub use extract::{
    request_id, AsOwner, CurrentUser, InTenant, RoleRequirement, TakenByRequiresRole, Tenantry,
};
pub use principal::{load_principal, Membership, Principal, TenantRole};
pub use roles::{ClientViewer, Owner, OwnerProof, Partner, Proof, Role, TenantRoleRequirement};
pub use tenant::{select_tenant, tenant_header, ActiveTenant, TENANT_HEADER};
