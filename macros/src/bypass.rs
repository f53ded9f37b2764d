//! `no_tenant_scope!(&actor, "reason")`: an audited bypass whose literal reason is checked here.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, LitStr, Token};

struct Input {
    actor: Expr,
    reason: Expr,
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let actor: Expr = input.parse()?;
        if input.is_empty() {
            return Err(syn::Error::new_spanned(
                &actor,
                "`no_tenant_scope!` needs an actor and a reason\n\
                 help: the correct format looks like `no_tenant_scope!(&owner, \"monthly billing across tenants\")`",
            ));
        }
        input.parse::<Token![,]>()?;
        let reason: Expr = input.parse()?;
        let _ = input.parse::<Option<Token![,]>>()?;
        Ok(Input { actor, reason })
    }
}

/// Expands `no_tenant_scope!(actor, "reason")`.
pub(crate) fn expand(tokens: TokenStream) -> syn::Result<TokenStream> {
    let Input { actor, reason } = syn::parse2(tokens)?;
    let lit: LitStr = match &reason {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => s.clone(),
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "`no_tenant_scope!` takes the reason as a string literal, checked at compile time\n\
                 help: for a reason computed at run time call `tenantry::no_tenant_scope(&actor, reason)?`",
            ))
        }
    };
    if lit.value().trim().is_empty() {
        return Err(syn::Error::new_spanned(
            &lit,
            "a bypass needs a non-empty reason: the audit log records why tenant isolation was lifted\n\
             help: say why, e.g. `no_tenant_scope!(&owner, \"cross-tenant invoice summary for the owner dashboard\")`",
        ));
    }
    Ok(quote! {
        ::tenantry::__private::__no_tenant_scope_literal(#actor, #lit)
    })
}
