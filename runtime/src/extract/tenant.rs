//! Tenant selection: which tenant a request acts in (`X-Tenant`, by id or slug).

use axum::http::HeaderMap;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::Db;
use crate::identity::auth::AuthError;
use crate::identity::directory::OwnerTenant;
use crate::identity::principal::{Principal, TenantRole};

/// The header naming the tenant a request acts in.
pub const TENANT_HEADER: &str = "x-tenant";

/// The tenant a request acts in, and the principal's role there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveTenant {
    /// The tenant's id.
    pub id: Uuid,
    /// The tenant's slug.
    pub slug: String,
    /// The tenant's name.
    pub name: String,
    /// The principal's role there (an Owner's global rights win over any membership).
    pub role: TenantRole,
}

fn forbidden() -> AuthError {
    AuthError::Forbidden("you may not act in this tenant".into())
}

/// The `X-Tenant` value: `Ok(None)` when absent; a duplicated or non-text header is an error.
pub fn tenant_header(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let mut values = headers.get_all(TENANT_HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::TenantRequired(
            "send exactly one X-Tenant header".into(),
        ));
    }
    let value = first.to_str().map_err(|_| forbidden())?.trim().to_owned();
    if value.is_empty() {
        return Err(AuthError::TenantRequired("X-Tenant is empty".into()));
    }
    Ok(Some(value))
}

/// Applies the contract's rules: `X-Tenant` names the tenant by id (a UUID) or slug; a member
/// acts in it with its role; an Owner may name any existing tenant; anything else (including an
/// unknown tenant) is 403, so tenant names cannot be probed. Without the header, a principal
/// with exactly one membership acts there; anyone else gets 400 `tenant_required`.
pub async fn select_tenant(
    db: &Db,
    principal: &Principal,
    requested: Option<&str>,
) -> Result<ActiveTenant, AuthError> {
    let owner_role = |role: TenantRole| {
        if principal.is_owner() {
            TenantRole::Owner
        } else {
            role
        }
    };
    let Some(requested) = requested else {
        return match principal.memberships() {
            [only] => Ok(ActiveTenant {
                id: only.tenant_id,
                slug: only.slug.clone(),
                name: only.name.clone(),
                role: owner_role(only.role),
            }),
            _ => Err(AuthError::TenantRequired(
                "name the tenant to act in with the X-Tenant header (id or slug)".into(),
            )),
        };
    };
    let as_id = Uuid::parse_str(requested).ok();
    let member = principal.memberships().iter().find(|m| match as_id {
        Some(id) => m.tenant_id == id,
        None => m.slug == requested,
    });
    if let Some(m) = member {
        return Ok(ActiveTenant {
            id: m.tenant_id,
            slug: m.slug.clone(),
            name: m.name.clone(),
            role: owner_role(m.role),
        });
    }
    if !principal.is_owner() {
        return Err(forbidden());
    }
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "tenant lookup failed");
        AuthError::Unavailable("the tenant directory is unavailable".into())
    };
    let mut conn = db.directory_conn().await.map_err(|e| unavailable(&e))?;
    // One parser decides: a key `Uuid::parse_str` accepts is an id, anything else a slug (the
    // schema refuses slugs of any UUID form, migration 00000000000008).
    let found: Vec<(Uuid, String, String)> = OwnerTenant {
        owner: principal.user_id(),
        id: as_id,
        slug: as_id.is_none().then(|| requested.to_owned()),
    }
    .load(&mut *conn)
    .await
    .map_err(|e| unavailable(&e))?;
    let t = found.into_iter().next().ok_or_else(forbidden)?;
    Ok(ActiveTenant {
        id: t.0,
        slug: t.1,
        name: t.2,
        role: TenantRole::Owner,
    })
}
