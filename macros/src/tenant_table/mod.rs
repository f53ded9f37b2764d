//! `#[tenant_table]` and `#[global_table]`: parse (`attr`, `model`) → check → expand.

mod attr;
mod check;
mod expand;
mod model;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;

/// Expands `#[tenant_table(args)]` on `item`.
pub(crate) fn tenant_table(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    expand::expand(attr::Kind::Tenant, args, item)
}

/// Expands `#[global_table(args)]` on `item`.
pub(crate) fn global_table(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    expand::expand(attr::Kind::Global, args, item)
}
