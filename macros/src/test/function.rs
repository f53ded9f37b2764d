//! Reading the test function: an `async fn` with one parameter, the test database.

use syn::{FnArg, ItemFn};

const SIGNATURE: &str =
    "help: write it as `#[tenantry::test] async fn name(t: tenantry::testing::TestDb) { .. }`";

/// Checks the function's shape, collecting every problem before failing.
pub(crate) fn check(item: &ItemFn) -> syn::Result<()> {
    let sig = &item.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            format!("`#[tenantry::test]` goes on an `async fn`\n{SIGNATURE}"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            format!("a `#[tenantry::test]` function cannot be generic\n{SIGNATURE}"),
        ));
    }
    match sig.inputs.len() {
        1 => {
            if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
                errors.push(syn::Error::new_spanned(
                    receiver,
                    format!("a `#[tenantry::test]` function is not a method\n{SIGNATURE}"),
                ));
            }
        }
        0 => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format!(
                "a `#[tenantry::test]` function takes one parameter, the test database\n{SIGNATURE}"
            ),
        )),
        _ => errors.push(syn::Error::new_spanned(
            &sig.inputs,
            format!(
                "a `#[tenantry::test]` function takes one parameter, the test database, not {}\n{SIGNATURE}",
                sig.inputs.len()
            ),
        )),
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            first.extend(errors);
            Err(first)
        }
    }
}
