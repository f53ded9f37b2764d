//! Parsing `#[requires_role(Role)]`.

use proc_macro2::{Span, TokenStream};
use syn::Ident;

/// The three roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoleName {
    Owner,
    Partner,
    ClientViewer,
}

impl RoleName {
    pub(crate) fn ident(self) -> Ident {
        let name = match self {
            RoleName::Owner => "Owner",
            RoleName::Partner => "Partner",
            RoleName::ClientViewer => "ClientViewer",
        };
        Ident::new(name, Span::call_site())
    }
}

const FORMAT: &str = "help: the correct format looks like `#[requires_role(Partner)]` (roles: `Owner`, `Partner`, `ClientViewer`)";

/// Parses the attribute's single role argument.
pub(crate) fn parse(args: TokenStream) -> syn::Result<RoleName> {
    if args.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("`#[requires_role]` needs the role a handler requires\n{FORMAT}"),
        ));
    }
    let path: syn::Path = syn::parse2(args.clone()).map_err(|_| {
        syn::Error::new_spanned(
            &args,
            format!("`#[requires_role]` takes one role name\n{FORMAT}"),
        )
    })?;
    let ident = path.get_ident().ok_or_else(|| {
        syn::Error::new_spanned(
            &path,
            format!("`#[requires_role]` takes a bare role name\n{FORMAT}"),
        )
    })?;
    match ident.to_string().as_str() {
        "Owner" => Ok(RoleName::Owner),
        "Partner" => Ok(RoleName::Partner),
        "ClientViewer" => Ok(RoleName::ClientViewer),
        other => Err(syn::Error::new_spanned(
            ident,
            format!(
                "unknown role `{other}`; expected `Owner`, `Partner` or `ClientViewer`\n{FORMAT}"
            ),
        )),
    }
}
