//! The check `#[requires_role]` makes of each parameter it leaves to axum: none may be a type the
//! attribute fills (`TenantCtx`, `Proof`, `Principal`) or the role extractor itself, written
//! under another name. The attribute recognises the first by their names; under an alias or a
//! renamed import one would be left to axum, which cannot extract it, and end in axum's opaque
//! "`Handler<_, _>` is not satisfied". This turns that into an error naming the fix.
//!
//! Autoref specialization: `ParamProbe::<T>::new().tenantry_param()` resolves to
//! [`FilledParam`] when `T` is such a type, else to [`AxumParam`]. Used by generated code, not
//! public API.

use std::marker::PhantomData;

use super::{AsOwner, InTenant};
use crate::ctx::life::ByRole;
use crate::ctx::{Access, TenantCtx};
use crate::identity::principal::Principal;
use crate::identity::{Proof, Role, TenantRoleRequirement};

/// A type tenantry fills for a `#[requires_role]` handler, or its role extractor.
pub trait Fillable {}
impl<A: Access> Fillable for TenantCtx<'_, A> {}
impl<R: Role> Fillable for Proof<'_, R> {}
impl Fillable for Principal {}
impl<R: TenantRoleRequirement> Fillable for InTenant<R> {}
impl Fillable for AsOwner {}
impl<X> Fillable for ByRole<X> {}

/// Probes the type of one parameter.
pub struct ParamProbe<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> ParamProbe<T> {
    /// A probe of `T`.
    pub fn new() -> &'static Self {
        &ParamProbe(PhantomData)
    }
}

/// The probe's answer for a type tenantry fills: `Unfilled::fillable` does not compile.
pub trait FilledParam<T: ?Sized> {
    /// Answers.
    fn tenantry_param(&self) -> Unfilled<T> {
        Unfilled(PhantomData)
    }
}
impl<T: ?Sized + Fillable> FilledParam<T> for ParamProbe<T> {}

/// The probe's answer for any other type: an axum extractor like any other.
pub trait AxumParam {
    /// Answers.
    fn tenantry_param(&self) -> Extracted {
        Extracted
    }
}
impl<T: ?Sized> AxumParam for &ParamProbe<T> {}

/// Any other parameter: fine.
pub struct Extracted;
impl Extracted {
    /// Fine.
    pub fn fillable(self) {}
}

/// A parameter of a type tenantry fills, left to axum.
pub struct Unfilled<T: ?Sized>(PhantomData<T>);
impl<T: ?Sized> Unfilled<T> {
    /// Does not compile: `T` is not [`WrittenByItsName`].
    pub fn fillable(self)
    where
        T: WrittenByItsName,
    {
    }
}

/// Never implemented: carries the compile error of a parameter that `#[requires_role]` would
/// fill, written under another name, or the role extractor taken as a parameter.
#[diagnostic::on_unimplemented(
    message = "`#[requires_role]` cannot fill this parameter of type `{Self}`",
    label = "written under another name (a type alias, a renamed import), or the role extractor itself",
    note = "the attribute fills parameters whose type is written `TenantCtx` (`TenantCtx<'_, ReadOnly>`), `Proof<Role>`, `OwnerProof` or `Principal`; write that name, not an alias or `use .. as ..`: any other parameter is left to axum, which cannot extract `{Self}`",
    note = "`InTenant<..>` and `AsOwner` are what the attribute takes for the handler: ask for `ctx: TenantCtx`, `proof: Proof<Partner>` or `owner: OwnerProof` instead"
)]
pub trait WrittenByItsName {}
