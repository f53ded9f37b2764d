//! Roles as types: `#[requires_role(Partner)]` checks the role at run time (in every build
//! profile) and hands the handler a proof whose type decides, at compile time, what it may do.

use std::marker::PhantomData;

use super::principal::{Principal, TenantRole};
use crate::ctx::bypass::{sealed as sealed_bypass, BypassActor, Liveness};
use crate::ctx::life::RequestLife;
use crate::ctx::{Access, Actor, ReadOnly, ReadWrite, TestingFeature};

mod sealed {
    pub trait Sealed {}
}

/// A role a handler may require: [`Owner`], [`Partner`] or [`ClientViewer`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tenantry role",
    label = "expected `Owner`, `Partner` or `ClientViewer`",
    note = "roles: `#[requires_role(Owner)]`, `#[requires_role(Partner)]`, `#[requires_role(ClientViewer)]`"
)]
pub trait Role: sealed::Sealed + Send + Sync + 'static {
    /// The role's name in messages.
    const NAME: &'static str;
}

/// A role exercised inside one tenant; its [`Access`] decides whether handlers may write.
pub trait TenantRoleRequirement: Role {
    /// [`ReadWrite`] or [`ReadOnly`].
    type Access: Access;
    /// The extractor's name in messages (`InTenant<Partner>`).
    const IN_TENANT: &'static str;
    /// Whether a principal with `role` in the active tenant satisfies this requirement.
    fn admits(role: TenantRole) -> bool;
}

/// The global Owner: acts across tenants (each use audited) and inside any tenant.
#[derive(Debug, Clone, Copy)]
pub enum Owner {}
/// Reads and writes inside the tenants it is a member of (Owners pass too).
#[derive(Debug, Clone, Copy)]
pub enum Partner {}
/// Reads inside its tenants; its transactions are `READ ONLY` (Partners and Owners pass too).
#[derive(Debug, Clone, Copy)]
pub enum ClientViewer {}

impl sealed::Sealed for Owner {}
impl sealed::Sealed for Partner {}
impl sealed::Sealed for ClientViewer {}
impl Role for Owner {
    const NAME: &'static str = "Owner";
}
impl Role for Partner {
    const NAME: &'static str = "Partner";
}
impl Role for ClientViewer {
    const NAME: &'static str = "ClientViewer";
}

impl TenantRoleRequirement for Partner {
    type Access = ReadWrite;
    const IN_TENANT: &'static str = "InTenant<Partner>";
    fn admits(role: TenantRole) -> bool {
        role >= TenantRole::Partner
    }
}
impl TenantRoleRequirement for ClientViewer {
    type Access = ReadOnly;
    const IN_TENANT: &'static str = "InTenant<ClientViewer>";
    fn admits(role: TenantRole) -> bool {
        role >= TenantRole::ClientViewer
    }
}

/// Proof that the request's principal holds role `R`. Only tenantry's extractors make one, and
/// it borrows the request's extractor (`'r`): it cannot be kept for a later request. It also
/// carries the request's life: a bypass opened with a proof whose request has ended is refused
/// ([`crate::error::DbError::RequestEnded`]).
#[derive(Debug, Clone)]
pub struct Proof<'r, R: Role> {
    actor: Actor,
    request_id: Option<String>,
    life: Option<RequestLife>,
    _role: PhantomData<fn() -> R>,
    _request: PhantomData<&'r ()>,
}

/// Proof of the global Owner role: the only user-facing [`BypassActor`], so only Owner
/// handlers can call `no_tenant_scope!(&owner, "..")`.
pub type OwnerProof<'r> = Proof<'r, Owner>;

impl<R: Role> Proof<'_, R> {
    pub(crate) fn new(
        principal: &Principal,
        request_id: Option<String>,
        life: Option<RequestLife>,
    ) -> Self {
        Self {
            actor: principal.actor(),
            request_id,
            life,
            _role: PhantomData,
            _request: PhantomData,
        }
    }

    /// Who holds the role.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

impl sealed_bypass::Sealed for Proof<'_, Owner> {}
impl BypassActor for Proof<'_, Owner> {
    fn bypass_actor(&self) -> Actor {
        self.actor.clone()
    }

    fn request_id(&self) -> Option<String> {
        self.request_id.clone()
    }

    fn liveness(&self) -> Liveness {
        match &self.life {
            Some(life) => Liveness::Request(life.clone()),
            None => Liveness::Always,
        }
    }
}

impl<R: Role> Proof<'static, R> {
    /// Test-only (feature `testing`): a proof of `R` held by `actor`. Without the feature this
    /// does not compile.
    pub fn for_test(actor: Actor) -> Self
    where
        R: TestingFeature,
    {
        Self {
            actor,
            request_id: None,
            life: None,
            _role: PhantomData,
            _request: PhantomData,
        }
    }
}
