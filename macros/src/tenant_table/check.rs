//! Validation of a declaration's own arguments before anything is generated.
//!
//! What depends on the schema (does the table have a `tenant_id` column, is the tenant column
//! `uuid NOT NULL`) cannot be seen by a macro, which only reads the struct: the generated code
//! checks it against the `table!` types at compile time (see `expand.rs`).

use syn::Ident;

use super::attr::{Args, Kind};
use super::model::Model;

/// Checks the declaration, returning every problem at once.
pub(crate) fn check(kind: Kind, args: &Args, model: &Model) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    if kind == Kind::Tenant {
        let column = tenant_column(args);
        for g in &args.generated {
            match model.field(g) {
                Some(f) if f.column == column => errors.push(syn::Error::new_spanned(
                    g,
                    "the tenant column is never generated: tenantry fills it from the transaction",
                )),
                Some(_) => {}
                None => errors.push(syn::Error::new_spanned(
                    g,
                    format!("`generated({g})` names no field of `{}`", model.ident),
                )),
            }
        }
    }
    let mut iter = errors.into_iter();
    match iter.next() {
        None => Ok(()),
        Some(mut first) => {
            for e in iter {
                first.combine(e);
            }
            Err(first)
        }
    }
}

/// The tenant column's name (`tenant_id` unless `column = ..` says otherwise).
pub(crate) fn tenant_column(args: &Args) -> Ident {
    args.column
        .clone()
        .unwrap_or_else(|| Ident::new("tenant_id", proc_macro2::Span::call_site()))
}
