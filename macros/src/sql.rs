//! `sql!("..")` and `sql!(Type, "..")`: a SQL fragment whose text is one string literal, checked
//! here, and whose call site gets a type of its own.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, LitStr, Token, Type};

const HELP: &str = "help: write the SQL out as one literal: `tenantry::sql!(\"amount_cents % 2 = 0\")`, \
     or with its SQL type: `tenantry::sql!(Text, \"lower(name)\")`; pass values through Diesel's \
     operators on the fragment, which binds them: `tenantry::sql!(Text, \"lower(name)\").eq(name)`; \
     SQL that must be built at run time runs under `no_tenant_scope!` with `conn.raw_load` or \
     `conn.raw_execute`";

struct Input {
    sql_type: Option<Type>,
    text: Expr,
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(input.error(format!(
                "`tenantry::sql!` needs the SQL text as a string literal\n{HELP}"
            )));
        }
        // `sql!(Type, "..")` when a type and a comma lead; otherwise `sql!("..")`.
        let fork = input.fork();
        let typed = !input.peek(syn::Lit)
            && fork.parse::<Type>().is_ok()
            && fork.parse::<Token![,]>().is_ok();
        let sql_type = if typed {
            let ty: Type = input.parse()?;
            input.parse::<Token![,]>()?;
            Some(ty)
        } else {
            None
        };
        let text: Expr = input.parse()?;
        let _ = input.parse::<Option<Token![,]>>()?;
        if !input.is_empty() {
            return Err(input.error(format!(
                "`tenantry::sql!` takes an optional SQL type and one string literal\n{HELP}"
            )));
        }
        Ok(Input { sql_type, text })
    }
}

/// Why `text` is not a string literal, in words that name what it is.
fn not_a_literal(text: &Expr) -> String {
    let what = match text {
        Expr::Macro(m) => {
            let name = m
                .mac
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default();
            match name.as_str() {
                "format" => "a `format!` string, built at run time, where an injection would rewrite the query".to_owned(),
                _ => format!("the result of `{name}!`, which is not a literal as written"),
            }
        }
        Expr::Path(_) => "a variable or constant, whose text is not visible here".to_owned(),
        Expr::Lit(_) => "a literal of another kind".to_owned(),
        _ => "an expression computed at run time".to_owned(),
    };
    format!("`tenantry::sql!` takes the SQL as one string literal, and this is {what}\n{HELP}")
}

/// Expands `sql!([Type,] "literal")`.
pub(crate) fn expand(tokens: TokenStream) -> syn::Result<TokenStream> {
    let Input { sql_type, text } = syn::parse2(tokens)?;
    let lit: LitStr = match &text {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            attrs,
        }) if attrs.is_empty() => s.clone(),
        other => return Err(syn::Error::new_spanned(other, not_a_literal(other))),
    };
    if lit.value().trim().is_empty() {
        return Err(syn::Error::new_spanned(
            &lit,
            format!("`tenantry::sql!` needs SQL text, and this literal is empty\n{HELP}"),
        ));
    }
    let sql_type = match sql_type {
        Some(ty) => quote!(#ty),
        None => quote!(::tenantry::__private::diesel::sql_types::Bool),
    };
    // The call site's own type holds the text: two call sites never share a type, so never a
    // cached prepared statement.
    Ok(quote! {
        {
            #[derive(Debug, Clone, Copy)]
            struct TenantrySqlSite;
            #[automatically_derived]
            impl ::tenantry::__private::FragmentSite for TenantrySqlSite {
                const SQL: &'static ::core::primitive::str = #lit;
            }
            ::tenantry::__private::sql_fragment::<#sql_type, TenantrySqlSite>()
        }
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn pretty(tokens: proc_macro2::TokenStream) -> String {
        let wrapped = quote!(
            fn f() {
                let _ = #tokens;
            }
        );
        prettyplease::unparse(&syn::parse2(wrapped).expect("expansion parses"))
    }

    #[test]
    fn sql_expansion() {
        let bool_fragment = super::expand(quote!("amount_cents % 2 = 0")).expect("expands");
        insta::assert_snapshot!("sql_bool", pretty(bool_fragment));
        let typed = super::expand(quote!(Text, "lower(name)")).expect("expands");
        insta::assert_snapshot!("sql_typed", pretty(typed));
        let path = super::expand(quote!(diesel::sql_types::Nullable<Text>, r"upper(name)"))
            .expect("a raw string literal and a path type expand");
        assert!(pretty(path).contains("Nullable<Text>"));
    }

    #[test]
    fn non_literals_are_named() {
        let cases = [
            (quote!(format!("name = '{}'", name)), "a `format!` string"),
            (quote!(Bool, concat!("a", "b")), "the result of `concat!`"),
            (quote!(text), "a variable or constant"),
            (quote!(Text, &text), "an expression computed at run time"),
            (quote!(b"TRUE"), "a literal of another kind"),
            (quote!(""), "this literal is empty"),
            (quote!(), "needs the SQL text"),
            (quote!(Bool, "TRUE", "FALSE"), "one string literal"),
        ];
        for (input, expected) in cases {
            let err = super::expand(input.clone()).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
            assert!(err.contains("tenantry::sql!"), "{input}: {err}");
        }
    }
}
