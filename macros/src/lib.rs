//! Procedural macros of [tenantry](https://docs.rs/tenantry). An implementation detail: depend on
//! the `tenantry` crate, which re-exports these with their documentation.
//!
//! Each macro is a one-line entry point that calls an `expand` function returning
//! `syn::Result<TokenStream>`, so that unit tests can call it directly.

use proc_macro::TokenStream;

mod bypass;
mod changeset;
mod diesel_attrs;
mod requires_role;
mod sql;
mod tenant_table;
mod test;

fn into_tokens(
    result: syn::Result<proc_macro2::TokenStream>,
    item: Option<TokenStream>,
) -> TokenStream {
    match result {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            // Emit the item untouched beside the error, so users see only the real problem.
            let mut out: TokenStream = err.to_compile_error().into();
            if let Some(item) = item {
                out.extend(item);
            }
            out
        }
    }
}

/// Declares a tenant table; see `tenantry::tenant_table`.
#[proc_macro_attribute]
pub fn tenant_table(args: TokenStream, item: TokenStream) -> TokenStream {
    into_tokens(
        tenant_table::tenant_table(args.into(), item.clone().into()),
        Some(item),
    )
}

/// Declares a global table; see `tenantry::global_table`.
#[proc_macro_attribute]
pub fn global_table(args: TokenStream, item: TokenStream) -> TokenStream {
    into_tokens(
        tenant_table::global_table(args.into(), item.clone().into()),
        Some(item),
    )
}

/// Opens an audited bypass with a literal reason; see `tenantry::no_tenant_scope!`.
#[proc_macro]
pub fn no_tenant_scope(input: TokenStream) -> TokenStream {
    into_tokens(bypass::expand(input.into()), None)
}

/// A SQL fragment whose text is a string literal; see `tenantry::sql!`.
#[proc_macro]
pub fn sql(input: TokenStream) -> TokenStream {
    into_tokens(sql::expand(input.into()), None)
}

/// Requires a role of an axum handler; see `tenantry::requires_role`.
#[proc_macro_attribute]
pub fn requires_role(args: TokenStream, item: TokenStream) -> TokenStream {
    let fallback: TokenStream = requires_role::fallback(item.clone().into()).into();
    into_tokens(
        requires_role::expand(args.into(), item.into()),
        Some(fallback),
    )
}

/// tenantry's `AsChangeset` derive; see `tenantry::AsChangeset`.
#[proc_macro_derive(AsChangeset, attributes(diesel))]
pub fn as_changeset(item: TokenStream) -> TokenStream {
    into_tokens(changeset::expand(item.into()), None)
}

/// An async test on a fresh, migrated test database; see `tenantry::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    into_tokens(test::expand(args.into(), item.into()), None)
}
