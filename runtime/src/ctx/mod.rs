//! The tenant context: which tenant a unit of work acts in, who acts, and whether it may write.
//!
//! A [`TenantCtx`] is bound to the request (or job) that made it: its lifetime `'r` borrows the
//! request's extractor, so a context cannot be kept in a `static`, a global cache, a spawned task
//! or the router's state and reused by a later request of another tenant. A request's context
//! also carries the request's life (`identity/life.rs`): used after the request ended, it is
//! refused with [`DbError::RequestEnded`].

pub(crate) mod audit;
pub(crate) mod bypass;
pub(crate) mod conn;
pub(crate) mod life;

pub use bypass::{no_tenant_scope, AuditedBypass, BypassActor};
pub use conn::{BypassConn, TenantConn};

use std::fmt;
use std::marker::PhantomData;

use uuid::Uuid;

use crate::ctx::life::RequestLife;
use crate::error::DbError;

/// Who performs a unit of work, as recorded in `audit_log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    user_id: Option<Uuid>,
    /// Shared with the principal it came from (a request's actor costs no copy).
    email: std::sync::Arc<str>,
}

impl Actor {
    /// A signed-in user (the identity layer builds these from a verified identity).
    pub fn user(user_id: Uuid, email: impl Into<String>) -> Self {
        Self::user_shared(user_id, email.into().into())
    }

    /// [`Actor::user`] with an email shared with its owner (a principal's).
    pub(crate) fn user_shared(user_id: Uuid, email: std::sync::Arc<str>) -> Self {
        Self {
            user_id: Some(user_id),
            email,
        }
    }

    /// A named system job (no `users` row); recorded as `job:<name>`.
    pub fn job(name: &str) -> Self {
        Self {
            user_id: None,
            email: format!("job:{name}").into(),
        }
    }

    /// The acting user's id, if the actor is a user.
    pub fn user_id(&self) -> Option<Uuid> {
        self.user_id
    }

    /// The actor's email (or `job:<name>` for system jobs).
    pub fn email(&self) -> &str {
        &self.email
    }
}

mod sealed {
    pub trait Sealed {}
}

/// What a tenant transaction may do: [`ReadWrite`] or [`ReadOnly`].
///
/// Sealed: the two modes below are the only ones.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tenantry access mode",
    note = "use `tenantry::ReadWrite` or `tenantry::ReadOnly`"
)]
pub trait Access: sealed::Sealed + Send + Sync + 'static {
    /// Whether transactions in this mode are opened `READ ONLY` in PostgreSQL.
    const READ_ONLY: bool;
}

/// Access mode that may read and write inside the tenant.
#[derive(Clone, Copy, Debug)]
pub enum ReadWrite {}
/// Access mode that may only read (its transactions are `READ ONLY` in PostgreSQL too).
#[derive(Clone, Copy, Debug)]
pub enum ReadOnly {}

impl sealed::Sealed for ReadWrite {}
impl sealed::Sealed for ReadOnly {}
impl Access for ReadWrite {
    const READ_ONLY: bool = false;
}
impl Access for ReadOnly {
    const READ_ONLY: bool = true;
}

/// Marker for access modes that may insert, update and delete.
#[diagnostic::on_unimplemented(
    message = "this tenant transaction is read-only (a `ClientViewer`'s, or a read-only job's): it cannot insert, update or delete",
    label = "a write needs a read-write tenant transaction",
    note = "a `ClientViewer` is read-only: require `Partner` (or `Owner`) for handlers that write; a job writes in `job.tx(..)`, not `job.read_only_tx(..)`"
)]
pub trait CanWrite: Access {}
impl CanWrite for ReadWrite {}

/// What a context carries: the tenant, the actor and the request, owned.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    pub(crate) tenant_id: Uuid,
    pub(crate) actor: Actor,
    pub(crate) request_id: Option<String>,
    /// An Owner acting in a tenant it is not a member of: the request's first tenant
    /// transaction writes one audit row (shared by every context of the request).
    pub(crate) owner_entry: Option<std::sync::Arc<OwnerEntry>>,
    /// The request's life, for a request's context (none for jobs and tests).
    pub(crate) life: Option<RequestLife>,
}

impl Scope {
    /// `Ok` unless this is a request's scope and the request has ended
    /// ([`DbError::RequestEnded`], logged).
    pub(crate) fn alive(&self) -> Result<(), DbError> {
        crate::ctx::life::check(self.life.as_ref())
    }
}

/// Whether an Owner's entry into a tenant (without a membership) still awaits its audit row.
#[derive(Debug)]
pub(crate) struct OwnerEntry {
    pending: std::sync::atomic::AtomicBool,
}

impl OwnerEntry {
    pub(crate) fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(OwnerEntry {
            pending: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Claims the audit row: `true` for the one transaction that writes it.
    pub(crate) fn claim(&self) -> bool {
        self.pending
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// Whether the row is still to be written.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The transaction that wrote the row rolled back: the next one writes it.
    pub(crate) fn release(&self) {
        self.pending
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The tenant a unit of work acts in.
///
/// A `TenantCtx` cannot be built from a bare id, nor deserialized, defaulted or converted: it
/// comes from `#[requires_role(..)]` (the request's extractor), from a system job of
/// [`crate::jobs::Jobs`] (audited), or in tests from `TenantCtx::for_test` (feature `testing`).
///
/// The lifetime `'r` ties the context to the request or job that made it, so it cannot outlive
/// it by accident: a `static`, a global cache, `tokio::spawn`, a channel and the router's state
/// all need `'static` values. A request's context is also refused by the database layer once its
/// request has ended ([`DbError::RequestEnded`]), however it got out. Continue work after a
/// response through a job, which is audited.
///
/// The type parameter says whether the context may write ([`ReadWrite`], the default) or only
/// read ([`ReadOnly`]); a read-only context yields `READ ONLY` transactions in which inserts,
/// updates and deletes do not compile.
pub struct TenantCtx<'r, A: Access = ReadWrite> {
    scope: Scope,
    _bound: PhantomData<&'r ()>,
    _access: PhantomData<fn() -> A>,
}

impl<A: Access> Clone for TenantCtx<'_, A> {
    fn clone(&self) -> Self {
        Self {
            scope: self.scope.clone(),
            _bound: PhantomData,
            _access: PhantomData,
        }
    }
}

impl<A: Access> fmt::Debug for TenantCtx<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCtx")
            .field("tenant_id", &self.scope.tenant_id)
            .field("actor", &self.scope.actor.email)
            .field("read_only", &A::READ_ONLY)
            .finish()
    }
}

impl<'r, A: Access> TenantCtx<'r, A> {
    /// Crate-internal constructor: a context living no longer than `'r` (the borrow of the
    /// request extractor or job that makes it).
    pub(crate) fn bound(scope: Scope) -> Self {
        Self {
            scope,
            _bound: PhantomData,
            _access: PhantomData,
        }
    }

    /// Not available: a context cannot be built from a bare id. This exists only to say so at
    /// compile time.
    #[doc(hidden)]
    pub fn new<T: FromBareId>(_id: T) -> Self {
        unreachable!("FromBareId has no implementations")
    }

    /// The active tenant's id.
    pub fn tenant_id(&self) -> Uuid {
        self.scope.tenant_id
    }

    /// Who acts.
    pub fn actor(&self) -> &Actor {
        &self.scope.actor
    }

    /// The request id recorded in audit rows, if any.
    pub fn request_id(&self) -> Option<&str> {
        self.scope.request_id.as_deref()
    }

    /// The same tenant and actor, read-only (for the reads of a handler that also writes).
    pub fn read_only(&self) -> TenantCtx<'r, ReadOnly> {
        TenantCtx::bound(self.scope.clone())
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl TenantCtx<'static, ReadOnly> {
    /// The context of `Db::connect`'s check of the tenant seal: the nil tenant, read-only.
    pub(crate) fn for_start_check() -> Self {
        Self::bound(Scope {
            tenant_id: Uuid::nil(),
            actor: Actor::job("tenantry-start-check"),
            request_id: None,
            owner_entry: None,
            life: None,
        })
    }
}

impl<A: Access> TenantCtx<'static, A> {
    /// Test-only constructor (feature `testing`): a context for `tenant_id` acting as `actor`.
    ///
    /// Never enable the `testing` feature in a production build; keep it in
    /// `[dev-dependencies]`. Without the feature this does not compile.
    pub fn for_test(tenant_id: Uuid, actor: Actor) -> Self
    where
        A: TestingFeature,
    {
        Self::bound(Scope {
            tenant_id,
            actor,
            request_id: None,
            owner_entry: None,
            life: None,
        })
    }
}

/// Implemented only when tenantry's `testing` feature is on: carries the compile error of the
/// test-only constructors (`TenantCtx::for_test`, `Proof::for_test`) and of `#[tenantry::test]`
/// in a build without it.
#[diagnostic::on_unimplemented(
    message = "`for_test` and `#[tenantry::test]` need tenantry's `testing` feature",
    label = "test-only",
    note = "add the feature to your dev-dependencies only: `tenantry = {{ version = \"..\", features = [\"testing\"] }}` under `[dev-dependencies]`; never enable it in a production build"
)]
pub trait TestingFeature {}
#[cfg(feature = "testing")]
impl<T: ?Sized> TestingFeature for T {}

/// Never implemented: carries the compile error of `TenantCtx::new(id)`, `TenantCtx::from(id)`
/// and `id.into()`.
#[diagnostic::on_unimplemented(
    message = "a `TenantCtx` cannot be built from a bare id",
    label = "anyone could name any tenant this way",
    note = "take the context from the request: `#[requires_role(Partner)] async fn h(ctx: TenantCtx, ..)`; a background job gets one from `Jobs` (audited); tests use `TenantCtx::for_test` (feature `testing`)"
)]
pub trait FromBareId: sealed::Sealed {}

/// Never implemented: carries the compile error of `TenantCtx::default()`.
#[diagnostic::on_unimplemented(
    message = "a `TenantCtx` has no default: there is no ambient tenant",
    label = "which tenant would this be?",
    note = "take the context from the request: `#[requires_role(Partner)] async fn h(ctx: TenantCtx, ..)`; a background job gets one from `Jobs` (audited); tests use `TenantCtx::for_test` (feature `testing`)"
)]
pub trait NoAmbientTenant: sealed::Sealed {}

/// Never implemented: carries the compile error of deserializing a `TenantCtx`.
#[diagnostic::on_unimplemented(
    message = "a `TenantCtx` cannot come from request data",
    label = "a client could name any tenant this way",
    note = "the tenant is chosen by `#[requires_role(..)]` from the verified identity and its memberships (`X-Tenant` only selects among them); take `ctx: TenantCtx` as a handler parameter"
)]
pub trait NotFromRequestData: sealed::Sealed {}

impl<A: Access + NoAmbientTenant> Default for TenantCtx<'_, A> {
    fn default() -> Self {
        unreachable!("NoAmbientTenant has no implementations")
    }
}

impl<A: Access + FromBareId> From<Uuid> for TenantCtx<'_, A> {
    fn from(_: Uuid) -> Self {
        unreachable!("FromBareId has no implementations")
    }
}

impl<'de, A: Access + NotFromRequestData> serde::Deserialize<'de> for TenantCtx<'_, A> {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        unreachable!("NotFromRequestData has no implementations")
    }
}
