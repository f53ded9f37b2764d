//! The tenant context: which tenant a unit of work acts in, who acts, and whether it may write.

use std::fmt;
use std::marker::PhantomData;

use uuid::Uuid;

/// Who performs a unit of work, as recorded in `audit_log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    user_id: Option<Uuid>,
    email: String,
}

impl Actor {
    /// A signed-in user (the identity layer builds these from a verified identity).
    pub fn user(user_id: Uuid, email: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id),
            email: email.into(),
        }
    }

    /// A named system job (no `users` row); recorded as `job:<name>`.
    pub fn job(name: &str) -> Self {
        Self {
            user_id: None,
            email: format!("job:{name}"),
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
    message = "this tenant transaction is read-only: it cannot insert, update or delete",
    label = "a write needs a read-write tenant context",
    note = "a `ClientViewer` is read-only; require `Partner` (or `Owner`) for handlers that write"
)]
pub trait CanWrite: Access {}
impl CanWrite for ReadWrite {}

/// The tenant a unit of work acts in.
///
/// A `TenantCtx` cannot be built from a bare id: it comes from the request extractor of the
/// identity layer, from [`crate::Db::job_tx`] (an audited background job), or in tests from
/// `TenantCtx::for_test` (feature `testing`). Every scoped query and tenant transaction needs one.
///
/// The type parameter says whether the context may write ([`ReadWrite`], the default) or only
/// read ([`ReadOnly`]); a read-only context yields `READ ONLY` transactions in which inserts,
/// updates and deletes do not compile.
pub struct TenantCtx<A: Access = ReadWrite> {
    tenant_id: Uuid,
    actor: Actor,
    request_id: Option<String>,
    _access: PhantomData<fn() -> A>,
}

impl<A: Access> Clone for TenantCtx<A> {
    fn clone(&self) -> Self {
        Self {
            tenant_id: self.tenant_id,
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            _access: PhantomData,
        }
    }
}

impl<A: Access> fmt::Debug for TenantCtx<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCtx")
            .field("tenant_id", &self.tenant_id)
            .field("actor", &self.actor.email)
            .field("read_only", &A::READ_ONLY)
            .finish()
    }
}

impl<A: Access> TenantCtx<A> {
    /// Crate-internal constructor: the identity layer and job entry point call it.
    pub(crate) fn new_trusted(tenant_id: Uuid, actor: Actor, request_id: Option<String>) -> Self {
        Self {
            tenant_id,
            actor,
            request_id,
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
        self.tenant_id
    }

    /// Who acts.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The request id recorded in audit rows, if any.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The same tenant and actor, read-only.
    pub fn read_only(&self) -> TenantCtx<ReadOnly> {
        TenantCtx::new_trusted(self.tenant_id, self.actor.clone(), self.request_id.clone())
    }
}

#[cfg(feature = "testing")]
impl<A: Access> TenantCtx<A> {
    /// Test-only constructor (feature `testing`): a context for `tenant_id` acting as `actor`.
    ///
    /// Never enable the `testing` feature in a production build; `tenantry doctor` cannot see it,
    /// so keep it in `[dev-dependencies]`.
    pub fn for_test(tenant_id: Uuid, actor: Actor) -> Self {
        Self::new_trusted(tenant_id, actor, None)
    }
}

/// Never implemented: carries the compile error of `TenantCtx::new(id)`.
#[diagnostic::on_unimplemented(
    message = "a `TenantCtx` cannot be built from a bare id",
    label = "anyone could name any tenant this way",
    note = "take the context from the request extractor (`#[requires_role(..)]`), from `Db::job_tx` for an audited background job, or from `TenantCtx::for_test` in tests (feature `testing`)"
)]
pub trait FromBareId: sealed::Sealed {}
