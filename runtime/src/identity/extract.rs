//! axum extractors: [`InTenant`] (a role inside the active tenant), [`AsOwner`] (the global
//! Owner) and [`CurrentUser`] (any provisioned user). `#[requires_role(..)]` expands to the
//! first two; a handler cannot get a [`TenantCtx`] any other way.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::authenticator::Authenticator;
use super::principal::{load_principal, Principal};
use super::roles::{Owner, Proof, TenantRoleRequirement};
use super::tenant::{select_tenant, tenant_header, ActiveTenant};
use crate::auth::AuthError;
use crate::ctx::TenantCtx;
use crate::Db;

/// What tenantry's extractors need from the application state: `impl FromRef<AppState> for
/// Tenantry` (or use `Tenantry` itself as the state).
#[derive(Clone, Debug)]
pub struct Tenantry {
    /// The database.
    pub db: Db,
    /// How requests are authenticated.
    pub auth: Arc<Authenticator>,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::FORBIDDEN);
        let body = Json(serde_json::json!({ "error": self.code(), "message": self.to_string() }));
        if status == StatusCode::UNAUTHORIZED {
            return (status, [("www-authenticate", "Cloudflare-Access")], body).into_response();
        }
        (status, body).into_response()
    }
}

/// The request id recorded in audit rows: a well-formed `X-Request-Id`, else a new one.
pub fn request_id(parts: &Parts) -> String {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Authenticates once per request (later extractors reuse the principal).
async fn principal(parts: &mut Parts, state: &Tenantry) -> Result<Principal, AuthError> {
    if let Some(p) = parts.extensions.get::<Principal>() {
        return Ok(p.clone());
    }
    let identity = state.auth.authenticate(parts).await?;
    let principal = load_principal(&state.db, &identity).await?;
    parts.extensions.insert(principal.clone());
    Ok(principal)
}

/// Any provisioned user, with the active tenant when one is named (or implied by a single
/// membership); for routes that do not act in a tenant, such as `/api/me`.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The principal.
    pub principal: Principal,
    /// The active tenant, if `X-Tenant` named one or the user has exactly one membership.
    pub active_tenant: Option<ActiveTenant>,
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    Tenantry: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let state = Tenantry::from_ref(state);
        let principal = principal(parts, &state).await?;
        let active_tenant = match tenant_header(&parts.headers)? {
            Some(named) => Some(select_tenant(&state.db, &principal, Some(&named)).await?),
            None if principal.memberships.len() == 1 => {
                Some(select_tenant(&state.db, &principal, None).await?)
            }
            None => None,
        };
        Ok(CurrentUser {
            principal,
            active_tenant,
        })
    }
}

/// Role `R` inside the active tenant: a [`TenantCtx`] (read-only for `ClientViewer`) and a proof.
///
/// What `#[requires_role(Partner)]` and `#[requires_role(ClientViewer)]` expand to. A principal
/// without the role is refused with 403 before the handler runs.
#[derive(Debug)]
pub struct InTenant<R: TenantRoleRequirement> {
    /// The tenant context the handler's transactions use.
    pub ctx: TenantCtx<R::Access>,
    /// Proof of the role.
    pub proof: Proof<R>,
    /// The principal.
    pub principal: Principal,
    /// The active tenant.
    pub tenant: ActiveTenant,
}

impl<S, R> FromRequestParts<S> for InTenant<R>
where
    S: Send + Sync,
    Tenantry: FromRef<S>,
    R: TenantRoleRequirement,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let state = Tenantry::from_ref(state);
        let principal = principal(parts, &state).await?;
        let named = tenant_header(&parts.headers)?;
        let tenant = select_tenant(&state.db, &principal, named.as_deref()).await?;
        if !R::admits(tenant.role) {
            return Err(AuthError::Forbidden(format!(
                "this action requires the {} role in this tenant",
                R::NAME
            )));
        }
        let request = request_id(parts);
        let ctx = TenantCtx::new_trusted(tenant.id, principal.actor(), Some(request.clone()));
        Ok(InTenant {
            ctx,
            proof: Proof::new(&principal, Some(request)),
            principal,
            tenant,
        })
    }
}

/// The global Owner, for cross-tenant routes: what `#[requires_role(Owner)]` expands to.
#[derive(Debug)]
pub struct AsOwner {
    /// Proof of the Owner role: pass it to `no_tenant_scope!(&owner, "..")`.
    pub proof: Proof<Owner>,
    /// The principal.
    pub principal: Principal,
    /// The request id.
    pub request_id: String,
}

impl<S> FromRequestParts<S> for AsOwner
where
    S: Send + Sync,
    Tenantry: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let state = Tenantry::from_ref(state);
        let principal = principal(parts, &state).await?;
        if !principal.is_owner {
            return Err(AuthError::Forbidden(
                "this action requires the Owner role".into(),
            ));
        }
        let request = request_id(parts);
        Ok(AsOwner {
            proof: Proof::new(&principal, Some(request.clone())),
            request_id: request,
            principal,
        })
    }
}

/// Never implemented: carries the compile error of a handler that takes a [`TenantCtx`]
/// without a role requirement.
#[diagnostic::on_unimplemented(
    message = "a handler cannot take a `TenantCtx` without a role requirement",
    label = "add `#[requires_role(Partner)]` (or `ClientViewer`) to the handler",
    note = "the attribute checks the role before the handler runs and hands it the tenant context"
)]
pub trait RoleRequirement {}

impl<S, A> FromRequestParts<S> for TenantCtx<A>
where
    S: Send + Sync,
    A: crate::Access,
    TenantCtx<A>: RoleRequirement,
{
    type Rejection = AuthError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, AuthError> {
        Err(AuthError::Forbidden("no role requirement".into()))
    }
}
