//! Parsing the arguments of `#[tenant_table(..)]` and `#[global_table(..)]`.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Path, Token};

/// Which of the two attributes is being expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Tenant,
    Global,
}

impl Kind {
    pub(crate) fn attr_name(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant_table",
            Kind::Global => "global_table",
        }
    }
}

/// The parsed arguments.
#[derive(Default)]
pub(crate) struct Args {
    /// `table = path::to::table_module`
    pub(crate) table: Option<Path>,
    /// `column = tenant_id`
    pub(crate) column: Option<Ident>,
    /// `generated(id, created_at)`: fields the database fills in, left out of `New<Model>`.
    pub(crate) generated: Vec<Ident>,
    /// `new = NewInvoice`
    pub(crate) new_name: Option<Ident>,
}

enum Arg {
    Table(Path),
    Column(Ident),
    Generated(Vec<Ident>),
    New(Ident),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        match key.to_string().as_str() {
            "table" => {
                input.parse::<Token![=]>()?;
                Ok(Arg::Table(input.parse()?))
            }
            "column" => {
                input.parse::<Token![=]>()?;
                Ok(Arg::Column(input.parse()?))
            }
            "new" => {
                input.parse::<Token![=]>()?;
                Ok(Arg::New(input.parse()?))
            }
            "generated" => {
                let content;
                syn::parenthesized!(content in input);
                let idents = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
                Ok(Arg::Generated(idents.into_iter().collect()))
            }
            other => Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown argument `{other}`; expected `table = ..`, `column = ..`, `generated(..)` or `new = ..`\n\
                     help: the correct format looks like `#[tenant_table(table = invoices, generated(id, created_at))]`"
                ),
            )),
        }
    }
}

/// Parses the attribute's arguments, collecting every error.
pub(crate) fn parse(kind: Kind, tokens: proc_macro2::TokenStream) -> syn::Result<Args> {
    let list = syn::parse::Parser::parse2(Punctuated::<Arg, Token![,]>::parse_terminated, tokens)?;
    let mut args = Args::default();
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for arg in list {
        match arg {
            Arg::Table(p) if args.table.is_none() => args.table = Some(p),
            Arg::Column(c) if kind == Kind::Tenant && args.column.is_none() => args.column = Some(c),
            Arg::Generated(g) if kind == Kind::Tenant => args.generated.extend(g),
            Arg::New(n) if kind == Kind::Tenant && args.new_name.is_none() => args.new_name = Some(n),
            Arg::Table(p) => push(syn::Error::new_spanned(p, "`table` is given twice")),
            Arg::Column(c) | Arg::New(c) => push(syn::Error::new_spanned(
                c,
                format!("this argument is not valid here (`#[{}]`)", kind.attr_name()),
            )),
            Arg::Generated(g) => push(syn::Error::new(
                g.first().map(|i| i.span()).unwrap_or_else(proc_macro2::Span::call_site),
                "`generated(..)` is only valid on `#[tenant_table]`: a global table has no `New<Model>`",
            )),
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(args),
    }
}
