//! The principal: a verified identity mapped to its `users` row and memberships.

use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::directory::{PrincipalRow, PrincipalRows, RecordSub};
use crate::auth::{AuthError, Identity};
use crate::db::Db;

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

    fn parse(s: &str) -> Option<Self> {
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
pub struct Principal {
    user_id: Uuid,
    email: String,
    is_owner: bool,
    memberships: Vec<Membership>,
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
        crate::ctx::Actor::user(self.user_id, self.email.clone())
    }
}

/// Maps `identity` to its principal: from the process's principal cache when it holds the
/// identity (no query), else in one round trip through the directory function
/// `tenantry_principal` (the app role cannot read `users` whole): the user by case-insensitive
/// email (a service token: the service identity by its common name; the kinds never mix) and
/// its memberships. Unknown identity → `NotProvisioned` (cached too, until the directory
/// changes).
///
/// The cache is emptied by every change to the directory, on every instance, as soon as it
/// commits (`LISTEN`/`NOTIFY`); when that listener is down, entries live at most
/// [`DbConfig::principal_cache_ttl`](crate::DbConfig::principal_cache_ttl) (see
/// [`DbConfig::listen_url`](crate::DbConfig::listen_url)).
///
/// What the authenticator calls. A `Principal` grants nothing by itself: the extractors trust
/// only the one the authenticator stored in the request, never a value built or looked up
/// elsewhere.
///
/// When the token's `sub` differs from the stored one (Cloudflare issues a new `sub` when a user
/// is removed and re-added), the stored `sub` is updated; the email stays the key.
pub async fn load_principal(db: &Db, identity: &Identity) -> Result<Principal, AuthError> {
    let cache = db.principals();
    if let Some(entry) = cache.get(identity) {
        let Some((principal, stored_sub)) = &entry.found else {
            return Err(AuthError::NotProvisioned(identity.email().to_owned()));
        };
        if let Some(sub) = new_sub(identity, stored_sub.as_deref()) {
            if let Ok(mut conn) = db.directory_conn().await {
                if record_sub(&mut conn, principal.user_id, sub).await {
                    let found = Some((principal.clone(), Some(sub.to_owned())));
                    cache.insert(identity, found, entry.generation);
                }
            }
        }
        return Ok(principal.clone());
    }
    // Begun before the lookup: a change that commits meanwhile keeps its result out of the cache.
    let generation = cache.generation();
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "principal lookup failed");
        AuthError::Unavailable("the user directory is unavailable".into())
    };
    let mut conn = db.directory_conn().await.map_err(|e| unavailable(&e))?;
    let rows: Vec<PrincipalRow> = PrincipalRows {
        email: identity.email().to_owned(),
        kind: identity.kind(),
    }
    .load(&mut *conn)
    .await
    .map_err(|e| unavailable(&e))?;
    let Some(first) = rows.as_slice().first() else {
        cache.insert(identity, None, generation);
        return Err(AuthError::NotProvisioned(identity.email().to_owned()));
    };
    let (user_id, email, is_owner, mut stored_sub) =
        (first.0, first.1.clone(), first.2, first.3.clone());
    let memberships = rows
        .into_iter()
        .filter_map(|(.., tenant_id, role, slug, name)| {
            Some(Membership {
                tenant_id: tenant_id?,
                slug: slug?,
                name: name?,
                role: TenantRole::parse(&role?)?,
            })
        })
        .collect();
    if let Some(sub) = new_sub(identity, stored_sub.as_deref()) {
        if record_sub(&mut conn, user_id, sub).await {
            stored_sub = Some(sub.to_owned());
        }
    }
    let principal = Principal {
        user_id,
        email,
        is_owner,
        memberships,
    };
    cache.insert(identity, Some((principal.clone(), stored_sub)), generation);
    Ok(principal)
}

/// The token's `sub` when it differs from the stored one.
fn new_sub<'a>(identity: &'a Identity, stored: Option<&str>) -> Option<&'a str> {
    match identity {
        Identity::User { sub: Some(sub), .. } if stored != Some(sub.as_str()) => Some(sub),
        _ => None,
    }
}

/// Records `sub` beside the user (`tenantry_record_sub`); whether it was recorded. It changes
/// nothing a principal grants, so it does not empty the principal caches (see migration
/// `0003_directory_notify`).
async fn record_sub(conn: &mut crate::pool::Pooled, user: Uuid, sub: &str) -> bool {
    let recorded = RecordSub {
        user,
        sub: sub.to_owned(),
    }
    .execute(&mut **conn)
    .await;
    match recorded {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, %user, "could not record the token's new sub");
            false
        }
    }
}

#[cfg(test)]
impl Principal {
    /// A principal without memberships, for the cache's unit tests.
    pub(crate) fn for_cache_tests(user_id: Uuid, email: &str) -> Self {
        Principal {
            user_id,
            email: email.to_owned(),
            is_owner: false,
            memberships: Vec::new(),
        }
    }
}
