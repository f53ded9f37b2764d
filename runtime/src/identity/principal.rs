//! The principal: a verified identity mapped to its `users` row and memberships.

use std::sync::Arc;

use uuid::Uuid;

/// A role inside one tenant, as stored in `memberships.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantRole {
    /// Read only.
    ClientViewer,
    /// Read and write.
    Partner,
    /// The global Owner acting inside a tenant (never stored in `memberships`).
    Owner,
}

impl TenantRole {
    /// The stored / JSON name (`client_viewer`, `partner`, `owner`).
    pub fn as_str(self) -> &'static str {
        match self {
            TenantRole::ClientViewer => "client_viewer",
            TenantRole::Partner => "partner",
            TenantRole::Owner => "owner",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "client_viewer" => Some(TenantRole::ClientViewer),
            "partner" => Some(TenantRole::Partner),
            _ => None,
        }
    }
}

/// One tenant a principal belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The tenant's id.
    pub tenant_id: Uuid,
    /// The tenant's slug.
    pub slug: String,
    /// The tenant's name.
    pub name: String,
    /// The principal's role there.
    pub role: TenantRole,
}

/// A provisioned user making a request, as the authenticator found it.
///
/// Read-only: its fields are private and only tenantry's authenticator makes one, so no
/// middleware or helper can forge a principal (say, an Owner) for the extractors to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Shared, not copied: every request takes the principal out of the principal cache and keeps
/// it in its extensions and its extractors, so a clone only counts references.
pub struct Principal {
    pub(crate) user_id: Uuid,
    pub(crate) email: Arc<str>,
    pub(crate) is_owner: bool,
    pub(crate) memberships: Arc<[Membership]>,
}

impl Principal {
    /// `users.id`.
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    /// `users.email` as stored.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// `users.is_owner`: the global Owner role.
    pub fn is_owner(&self) -> bool {
        self.is_owner
    }

    /// Memberships, by tenant slug.
    pub fn memberships(&self) -> &[Membership] {
        &self.memberships
    }

    /// The membership in `tenant_id`, if any.
    pub fn membership(&self, tenant_id: Uuid) -> Option<&Membership> {
        self.memberships.iter().find(|m| m.tenant_id == tenant_id)
    }

    /// The actor recorded in audit rows.
    pub fn actor(&self) -> crate::ctx::Actor {
        crate::ctx::Actor::user_shared(self.user_id, self.email.clone())
    }
}

#[cfg(test)]
impl Principal {
    /// A principal without memberships, for the cache's unit tests.
    pub(crate) fn for_cache_tests(user_id: Uuid, email: &str) -> Self {
        Principal {
            user_id,
            email: email.into(),
            is_owner: false,
            memberships: Arc::from([]),
        }
    }
}
