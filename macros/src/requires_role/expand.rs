//! Code generation for `#[requires_role(..)]`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Ident, ItemFn};

use super::attr::{self, RoleName};
use super::handler;

/// Rewrites the handler so that its first extractor checks the role (403 before the body runs,
/// in every build profile) and fills the `TenantCtx` / proof / principal parameters.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let role = attr::parse(args)?;
    let mut func: ItemFn = match syn::parse2::<syn::Item>(item)? {
        syn::Item::Fn(f) => f,
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "`#[requires_role]` goes on an `async fn` axum handler, not on this item",
            ))
        }
    };
    let filled = handler::read(role, &mut func)?;
    // The extractor is a local of the handler; the context and proof borrow it, so they cannot
    // outlive the request (a borrow error names this variable).
    let auth = Ident::new("tenantry_request", Span::mixed_site());
    let role_ident = role.ident();
    let role_path = quote!(::tenantry::identity::#role_ident);
    let extractor = match role {
        RoleName::Owner => quote!(::tenantry::identity::AsOwner),
        _ => quote!(::tenantry::identity::InTenant<#role_path>),
    };
    let mut prologue = Vec::new();
    if let Some(pat) = &filled.ctx {
        prologue.push(quote! {
            let #pat: ::tenantry::TenantCtx<
                '_,
                <#role_path as ::tenantry::identity::TenantRoleRequirement>::Access,
            > = #auth.ctx();
        });
    }
    if let Some((pat, ty)) = &filled.proof {
        prologue.push(quote! { let #pat: #ty = #auth.proof(); });
    }
    if let Some((pat, ty)) = &filled.principal {
        prologue.push(quote! { let #pat: #ty = ::core::clone::Clone::clone(#auth.principal()); });
    }
    if prologue.is_empty() {
        prologue.push(quote! { let _ = #auth; });
    }
    let auth_arg: syn::FnArg = syn::parse_quote!(#auth: #extractor);
    func.sig.inputs.insert(0, auth_arg);
    let body = &func.block;
    let new_body: syn::Block = syn::parse_quote!({
        #(#prologue)*
        #body
    });
    *func.block = new_body;
    let doc = format!(" Requires the `{role_ident}` role (checked before the handler runs).");
    Ok(quote! {
        #[doc = #doc]
        #func
    })
}

/// The handler to emit beside an error: unchanged, except that the parameters tenantry would
/// have filled get the anonymous lifetime they need (`TenantCtx<'_>`), so that the attribute's
/// error is not followed by "implicit elided lifetime not allowed here".
pub(crate) fn fallback(item: TokenStream) -> TokenStream {
    let Ok(mut func) = syn::parse2::<ItemFn>(item.clone()) else {
        return item;
    };
    for arg in &mut func.sig.inputs {
        if let syn::FnArg::Typed(pat_type) = arg {
            handler::add_anonymous_lifetime(&mut pat_type.ty);
        }
    }
    quote!(#func)
}
