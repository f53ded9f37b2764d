//! Validation of a declaration before anything is generated.

use syn::Ident;

use super::attr::{Args, Kind};
use super::model::Model;

/// Checks the declaration, returning every problem at once.
pub(crate) fn check(kind: Kind, args: &Args, model: &Model) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    match kind {
        Kind::Tenant => {
            let column = tenant_column(args);
            if model.field(&column).is_none() {
                errors.push(syn::Error::new_spanned(
                    &model.ident,
                    format!(
                        "`#[tenant_table]` model `{}` has no `{column}` field\n\
                         help: a tenant table carries `tenant_id uuid not null`; add `pub {column}: uuid::Uuid`, \
                         or name the tenant column: `#[tenant_table(column = owner_tenant)]`",
                        model.ident
                    ),
                ));
            }
            for g in &args.generated {
                if g == &column {
                    errors.push(syn::Error::new_spanned(
                        g,
                        "the tenant column is never generated: tenantry fills it from the context",
                    ));
                } else if model.field(g).is_none() {
                    errors.push(syn::Error::new_spanned(
                        g,
                        format!("`generated({g})` names no field of `{}`", model.ident),
                    ));
                }
            }
        }
        Kind::Global => {
            if let Some(field) = model
                .fields
                .iter()
                .find(|f| f.ident.as_ref().is_some_and(|i| i == "tenant_id"))
            {
                errors.push(syn::Error::new_spanned(
                    field.ident.as_ref().unwrap_or(&model.ident),
                    format!(
                        "`{}` has a `tenant_id` column, so it cannot be declared `#[global_table]`\n\
                         help: declare it with `#[tenant_table]` so that every query on it is scoped",
                        model.ident
                    ),
                ));
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

/// The tenant column's field name (`tenant_id` unless `column = ..` says otherwise).
pub(crate) fn tenant_column(args: &Args) -> Ident {
    args.column
        .clone()
        .unwrap_or_else(|| Ident::new("tenant_id", proc_macro2::Span::call_site()))
}
