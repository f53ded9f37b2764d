//! Code generation for `#[tenantry::test]`: a `#[test]` function that runs the `async fn` on a
//! fresh test database (`tenantry::testing::run_test`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ItemFn;

use super::{attr, function};

/// Expands the attribute. On error the caller emits the errors alone: the function is not a
/// test without the attribute's harness, so emitting it untouched would only add errors.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item: ItemFn = syn::parse2(item)?;
    let args = attr::parse(args);
    let shape = function::check(&item);
    let args = match (args, shape) {
        (Ok(args), Ok(())) => args,
        (Err(mut a), Err(b)) => {
            a.combine(b);
            return Err(a);
        }
        (Err(e), Ok(())) | (Ok(_), Err(e)) => return Err(e),
    };

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let name = &sig.ident;
    let output = &sig.output;
    let inputs = &sig.inputs;
    let body = format_ident!("__tenantry_test_body");
    let migrations = match &args.migrations {
        Some(expr) => quote!(#expr),
        None => quote!(::tenantry::__private::NoMigrations),
    };
    Ok(quote! {
        #(#attrs)*
        #[::core::prelude::v1::test]
        #vis fn #name() #output {
            const _: () = ::tenantry::__private::testing_feature::<()>();
            async fn #body(#inputs) #output #block
            ::tenantry::__private::run_test(#migrations, #body)
        }
    })
}
