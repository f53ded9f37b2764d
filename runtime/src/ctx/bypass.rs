//! Audited bypass: the only way to work across tenants or to run raw SQL.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::panic::Location;

use crate::ctx::life::RequestLife;
use crate::ctx::Actor;
use crate::error::{DbError, ScopeError};

pub(crate) mod sealed {
    /// Seal of [`super::BypassActor`]: tenantry decides who may lift tenant isolation.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` may not open a cross-tenant bypass",
        label = "only an Owner's proof or a system job may open `no_tenant_scope!`",
        note = "`BypassActor` is sealed: its implementations are tenantry's `OwnerProof` (from `#[requires_role(Owner)]`) and `SystemJob` (from the `Jobs` made once in `main`)"
    )]
    pub trait Sealed {}
}

/// Who may lift tenant isolation: an Owner's proof ([`crate::identity::OwnerProof`], from
/// `#[requires_role(Owner)]`) or a system job ([`crate::jobs::SystemJob`], from the
/// [`crate::jobs::Jobs`] capability made once in `main`). Sealed: partners, viewers and any other type
/// cannot implement it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` may not open a cross-tenant bypass",
    label = "only an Owner or a system job may call `no_tenant_scope!`",
    note = "require `Owner` on the handler (`#[requires_role(Owner)]`) and pass its proof, or run the work as a `SystemJob` of the `Jobs` made in `main`"
)]
pub trait BypassActor: sealed::Sealed {
    /// The actor recorded in the audit row.
    fn bypass_actor(&self) -> Actor;

    /// The request the bypass serves, recorded in `audit_log.request_id` (none for jobs).
    fn request_id(&self) -> Option<String> {
        None
    }

    /// When the actor may act: an Owner's proof while its request runs, a system job outside
    /// the tasks that serve requests. Checked when the bypass runs.
    #[doc(hidden)]
    fn liveness(&self) -> Liveness {
        Liveness::Always
    }
}

/// When a bypass may run: what [`BypassActor::liveness`] tells it. Not public API.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum Liveness {
    /// Any time.
    Always,
    /// While the request runs (an Owner's proof).
    Request(RequestLife),
    /// Outside the tasks that serve requests (a system job).
    OutsideRequests,
}

/// Permission to work outside tenant scoping once, with a recorded reason.
///
/// Made by [`no_tenant_scope`] or the `no_tenant_scope!` macro (which rejects an empty literal at
/// compile time) from an Owner's proof or a system job, and bound to its lifetime `'a`: it
/// cannot outlive the request or job that opened it. Consumed by [`crate::db::Db::bypass`] or a tenant
/// connection's raw SQL methods, each of which writes exactly one `audit_log` row in the same
/// transaction as the work.
#[derive(Debug)]
#[must_use = "a bypass does nothing until used: `db.bypass(token, ..)`"]
pub struct AuditedBypass<'a> {
    pub(crate) actor: Actor,
    pub(crate) reason: Cow<'static, str>,
    pub(crate) action: Cow<'static, str>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) request_id: Option<String>,
    /// When it may run: an Owner's only during the Owner's request, a job's only outside
    /// requests.
    liveness: Liveness,
    _actor: PhantomData<&'a ()>,
}

impl AuditedBypass<'_> {
    /// Names the action recorded in the audit row (default `no_tenant_scope`).
    pub fn action(mut self, action: impl Into<Cow<'static, str>>) -> Self {
        self.action = action.into();
        self
    }

    /// Records the request that opened the bypass (`audit_log.request_id`).
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The recorded reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The actor the audit row will name.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// `Ok` unless the bypass was opened with an Owner's proof whose request has ended
    /// ([`DbError::RequestEnded`]) or by a system job in a task that serves a request
    /// ([`DbError::JobInRequest`]); each refusal is logged.
    pub(crate) fn alive(&self) -> Result<(), DbError> {
        match &self.liveness {
            Liveness::Always => Ok(()),
            Liveness::Request(life) => life.check(),
            Liveness::OutsideRequests => {
                crate::ctx::life::outside_requests("a system job's bypass")
            }
        }
    }

    /// Where in the source the bypass was opened (`file:line:column`).
    pub fn location(&self) -> String {
        format!(
            "{}:{}:{}",
            self.location.file(),
            self.location.line(),
            self.location.column()
        )
    }
}

/// Opens an audited bypass with a reason known only at run time.
///
/// Prefer the `no_tenant_scope!(&actor, "reason")` macro when the reason is a literal: it is
/// checked at compile time. Here an empty or blank reason is [`ScopeError::EmptyReason`].
#[track_caller]
pub fn no_tenant_scope<'a>(
    actor: &'a impl BypassActor,
    reason: impl Into<Cow<'static, str>>,
) -> Result<AuditedBypass<'a>, ScopeError> {
    let reason = reason.into();
    if reason.trim().is_empty() {
        return Err(ScopeError::EmptyReason);
    }
    Ok(open(actor, reason, Location::caller()))
}

/// What `no_tenant_scope!` expands to after checking its literal (not public API).
#[doc(hidden)]
#[track_caller]
pub fn __no_tenant_scope_literal<'a>(
    actor: &'a impl BypassActor,
    reason: &'static str,
) -> AuditedBypass<'a> {
    open(actor, Cow::Borrowed(reason), Location::caller())
}

fn open<'a>(
    actor: &'a impl BypassActor,
    reason: Cow<'static, str>,
    location: &'static Location<'static>,
) -> AuditedBypass<'a> {
    AuditedBypass {
        actor: actor.bypass_actor(),
        reason,
        action: Cow::Borrowed("no_tenant_scope"),
        location,
        request_id: actor.request_id(),
        liveness: actor.liveness(),
        _actor: PhantomData,
    }
}
