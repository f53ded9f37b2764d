//! Parsing the arguments of `#[tenantry::test(migrations = ..)]`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, MetaNameValue, Token};

pub(crate) const FORMAT: &str = "help: the correct format looks like `#[tenantry::test]` or \
     `#[tenantry::test(migrations = crate::MIGRATIONS)]`, where `MIGRATIONS` is your \
     `diesel_migrations::embed_migrations!(\"migrations\")`";

/// The attribute's arguments.
#[derive(Default)]
pub(crate) struct Args {
    /// The application's migrations, applied after tenantry's: any Diesel `MigrationSource`.
    pub(crate) migrations: Option<Expr>,
}

/// Parses `migrations = <expr>` (optional); every unknown or repeated argument is an error.
pub(crate) fn parse(args: TokenStream) -> syn::Result<Args> {
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated
        .parse2(args.clone())
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("`#[tenantry::test]` takes `name = value` arguments\n{FORMAT}"),
            )
        })?;
    let mut out = Args::default();
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for pair in pairs {
        if pair.path.is_ident("migrations") {
            if out.migrations.is_some() {
                push(syn::Error::new_spanned(
                    &pair.path,
                    format!("`migrations` is given twice\n{FORMAT}"),
                ));
            }
            out.migrations = Some(pair.value);
        } else {
            let name = quote::ToTokens::to_token_stream(&pair.path).to_string();
            push(syn::Error::new_spanned(
                &pair.path,
                format!("unknown argument `{name}` of `#[tenantry::test]`\n{FORMAT}"),
            ));
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
