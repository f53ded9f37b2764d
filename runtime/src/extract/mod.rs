//! axum extractors: [`InTenant`] (a role inside the active tenant), [`AsOwner`] (the global
//! Owner) and [`CurrentUser`] (any provisioned user). `#[requires_role(..)]` takes the first two
//! for a handler (through the hidden [`ByRole`]); a handler cannot get a [`TenantCtx`] any other
//! way, and neither is an extractor on its own.

pub(crate) mod fair;
pub use fair::metrics_router;
pub(crate) mod params;
mod principal;
mod tenant;

pub use principal::load_principal;
pub use tenant::{select_tenant, tenant_header, ActiveTenant, TENANT_HEADER};

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::ctx::life::{ByRole, HasLife, RequestLife};
use crate::ctx::{OwnerEntry, Scope, TenantCtx};
use crate::db::Db;
use crate::identity::auth::AuthError;
use crate::identity::auth::Authenticator;
use crate::identity::CsrfPolicy;
use crate::identity::{Owner, Proof, TenantRoleRequirement};
use crate::identity::{Principal, TenantRole};

/// What tenantry's extractors need from the application state: `impl FromRef<AppState> for
/// Tenantry` (or use `Tenantry` itself as the state).
#[derive(Clone, Debug)]
pub struct Tenantry {
    /// The database.
    pub db: Db,
    /// How requests are authenticated.
    pub auth: Arc<Authenticator>,
    /// Which origins besides the request's own may send state-changing requests (and any
    /// request to an Owner route): `CsrfPolicy::new(settings.allowed_origins.clone())`, or
    /// `CsrfPolicy::default()` for the request's own origin alone. Every extractor checks it.
    pub csrf: CsrfPolicy,
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

/// The principal the authenticator found for this request, cached in the request's extensions.
///
/// Private: no code outside tenantry can put one there, so a middleware (or a test helper that
/// leaked into production) cannot make the extractors trust a principal the authenticator did not
/// produce. A `Principal` inserted by anyone else is ignored.
#[derive(Clone)]
struct Authenticated(Principal);

/// Authenticates once per request (later extractors reuse the principal), after refusing a
/// cross-site state-changing request.
async fn principal(parts: &mut Parts, state: &Tenantry) -> Result<Principal, AuthError> {
    state.csrf.check(&parts.method, &parts.headers)?;
    if let Some(Authenticated(p)) = parts.extensions.get::<Authenticated>() {
        return Ok(p.clone());
    }
    let identity = state.auth.authenticate(parts).await?;
    let principal = load_principal(&state.db, &identity).await?;
    parts.extensions.insert(Authenticated(principal.clone()));
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
            None if principal.memberships().len() == 1 => {
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

/// Role `R` inside the active tenant: what `#[requires_role(Partner)]` and
/// `#[requires_role(ClientViewer)]` take for a handler. A principal without the role is refused
/// with 403 before the handler runs.
///
/// It holds the request's tenant scope; the [`TenantCtx`] and [`Proof`] it hands out borrow it,
/// so they cannot outlive the handler. It is not an extractor on its own: a handler takes it
/// through `#[requires_role(..)]`, which keeps it in a local of the handler and ends what it
/// grants when the handler returns (a context used after that is refused,
/// [`crate::error::DbError::RequestEnded`]).
#[derive(Debug)]
pub struct InTenant<R: TenantRoleRequirement> {
    scope: Scope,
    principal: Principal,
    tenant: ActiveTenant,
    _role: PhantomData<fn() -> R>,
}

impl<R: TenantRoleRequirement> HasLife for InTenant<R> {
    fn life(&self) -> &RequestLife {
        self.scope
            .life
            .as_ref()
            .expect("a request's scope carries its life")
    }
}

impl<R: TenantRoleRequirement> InTenant<R> {
    /// The tenant context of this request (read-only for `ClientViewer`).
    pub fn ctx(&self) -> TenantCtx<'_, R::Access> {
        TenantCtx::bound(self.scope.clone())
    }

    /// Proof of the role, for this request.
    pub fn proof(&self) -> Proof<'_, R> {
        Proof::new(
            &self.principal,
            self.scope.request_id.clone(),
            self.scope.life.clone(),
        )
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The active tenant.
    pub fn tenant(&self) -> &ActiveTenant {
        &self.tenant
    }
}

impl<S, R> FromRequestParts<S> for ByRole<InTenant<R>>
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
        // An Owner acting where it is no member: audited by the request's first tenant
        // transaction (see `Db::tx`).
        let owner_entry = (tenant.role == TenantRole::Owner
            && principal.membership(tenant.id).is_none())
        .then(OwnerEntry::new);
        crate::extract::fair::enter(parts, &state.db, tenant.id, &tenant.slug)?;
        let request_id = request_id(parts);
        Ok(ByRole(InTenant {
            scope: Scope {
                tenant_id: tenant.id,
                actor: principal.actor(),
                life: Some(RequestLife::new(R::IN_TENANT, request_id.clone())),
                request_id: Some(request_id),
                owner_entry,
            },
            principal,
            tenant,
            _role: PhantomData,
        }))
    }
}

/// The global Owner, for cross-tenant routes: what `#[requires_role(Owner)]` takes for a
/// handler. Like [`InTenant`], not an extractor on its own, and what it grants ends with the
/// handler.
#[derive(Debug)]
pub struct AsOwner {
    principal: Principal,
    request_id: String,
    life: RequestLife,
}

impl HasLife for AsOwner {
    fn life(&self) -> &RequestLife {
        &self.life
    }
}

impl AsOwner {
    /// Proof of the Owner role, for this request: pass it to `no_tenant_scope!(&owner, "..")`.
    pub fn proof(&self) -> Proof<'_, Owner> {
        Proof::new(
            &self.principal,
            Some(self.request_id.clone()),
            Some(self.life.clone()),
        )
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The request id recorded in audit rows.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl<S> FromRequestParts<S> for ByRole<AsOwner>
where
    S: Send + Sync,
    Tenantry: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let state = Tenantry::from_ref(state);
        // Before anything else: an Owner route's GET writes an audit row.
        state.csrf.check_owner(&parts.headers)?;
        let principal = principal(parts, &state).await?;
        if !principal.is_owner() {
            return Err(AuthError::Forbidden(
                "this action requires the Owner role".into(),
            ));
        }
        let request_id = request_id(parts);
        Ok(ByRole(AsOwner {
            life: RequestLife::new("AsOwner", request_id.clone()),
            request_id,
            principal,
        }))
    }
}

/// Never implemented: carries the compile error of a handler that takes [`InTenant`] or
/// [`AsOwner`] itself (shown by `#[axum::debug_handler]`; axum's own error for the route is
/// "`Handler<_, _>` is not satisfied").
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an extractor of its own: `#[requires_role(..)]` takes it for the handler",
    label = "a role extractor kept by the handler could outlive its request",
    note = "write `#[requires_role(Partner)] async fn h(ctx: TenantCtx, proof: Proof<Partner>, principal: Principal, ..)` (or `#[requires_role(Owner)] async fn h(owner: OwnerProof, ..)`): the attribute checks the role and hands the body what it grants, for this request only"
)]
pub trait TakenByRequiresRole<S> {}

impl<S, R> FromRequestParts<S> for InTenant<R>
where
    S: Send + Sync,
    R: TenantRoleRequirement,
    InTenant<R>: TakenByRequiresRole<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, AuthError> {
        Err(AuthError::Forbidden("no role requirement".into()))
    }
}

impl<S> FromRequestParts<S> for AsOwner
where
    S: Send + Sync,
    AsOwner: TakenByRequiresRole<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, AuthError> {
        Err(AuthError::Forbidden("no role requirement".into()))
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

impl<'r, S, A> FromRequestParts<S> for TenantCtx<'r, A>
where
    S: Send + Sync,
    A: crate::ctx::Access,
    TenantCtx<'r, A>: RoleRequirement,
{
    type Rejection = AuthError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, AuthError> {
        Err(AuthError::Forbidden("no role requirement".into()))
    }
}
