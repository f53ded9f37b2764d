//! Code generation for `#[requires_role(..)]`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn};

use super::attr::{self, RoleName};
use super::handler;

/// The handler's local that holds the role extractor: what rustc names when a context outlives
/// the request, so it says what to do instead.
pub(crate) const REQUEST_LOCAL: &str = "request_ends_with_handler_queue_later_work_as_a_job";

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
    // The extractor and the end of its grants are locals of the handler: the context and proof
    // borrow the first, so they cannot outlive the request (a borrow error names it), and the
    // second, which the body cannot name (mixed-site hygiene), ends what they grant when the
    // handler returns or is dropped.
    let auth_param = Ident::new("tenantry_extractor", Span::mixed_site());
    // Rebound under a name and a span of the handler (its name's), so that a borrow error names
    // it, and the name is the fix: "`request_ends_with_handler_queue_later_work_as_a_job` does
    // not live long enough" when a context or proof goes into a spawned task, a static or the
    // router's state (a local the macro made up would be called "a temporary value"). Moving it
    // out by that name is a deliberate act, refused at run time once the handler returns.
    let auth = Ident::new(REQUEST_LOCAL, func.sig.ident.span());
    let end = Ident::new("tenantry_end_of_request", Span::mixed_site());
    let role_ident = role.ident();
    let role_path = quote!(::tenantry::identity::#role_ident);
    let extractor = match role {
        RoleName::Owner => quote!(::tenantry::identity::AsOwner),
        _ => quote!(::tenantry::identity::InTenant<#role_path>),
    };
    let mut prologue = vec![quote! {
        let #auth = #auth_param;
        let #end = #auth.arm();
    }];
    // Spanned on the parameter, so that a borrow error points at it.
    if let Some(pat) = &filled.ctx {
        prologue.push(quote_spanned! {pat.span()=>
            let #pat: ::tenantry::__private::TenantCtx<
                '_,
                <#role_path as ::tenantry::__private::TenantRoleRequirement>::Access,
            > = #auth.get().ctx();
        });
    }
    if let Some((pat, ty)) = &filled.proof {
        prologue.push(quote_spanned! {pat.span()=> let #pat: #ty = #auth.get().proof(); });
    }
    if let Some((pat, ty)) = &filled.principal {
        prologue
            .push(quote! { let #pat: #ty = ::core::clone::Clone::clone(#auth.get().principal()); });
    }
    // A parameter left to axum whose type is one tenantry fills, under another name (an alias,
    // a renamed import): refused here, naming the fix, rather than by axum's opaque
    // "`Handler<_, _>` is not satisfied". Type-checked only, never run.
    let probes: Vec<_> = filled
        .kept_types
        .iter()
        .map(|ty| {
            quote_spanned! {ty.span()=>
                ::tenantry::__private::ParamProbe::<#ty>::new().tenantry_param().fillable()
            }
        })
        .collect();
    if !probes.is_empty() {
        prologue.push(quote! {
            let _ = || {
                #[allow(unused_imports)]
                use ::tenantry::__private::{FilledParam as _, AxumParam as _};
                #(#probes;)*
            };
        });
    }
    let auth_arg: syn::FnArg =
        syn::parse_quote!(#auth_param: ::tenantry::__private::ByRole<#extractor>);
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
