//! Expansion snapshot and error messages of tenantry's `#[derive(AsChangeset)]`.

use quote::quote;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    prettyplease::unparse(&syn::parse2(tokens).expect("expansion parses as a file"))
}

#[test]
fn changeset_expansion() {
    let out = super::expand(quote! {
        #[diesel(table_name = invoices)]
        pub struct PatchInvoice {
            id: Uuid,
            status: Option<String>,
            #[diesel(column_name = amount_cents)]
            amount: i64,
        }
    })
    .expect("expands");
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn misuse_is_explained() {
    let no_table = super::expand(quote!(
        struct Patch {
            status: Option<String>,
        }
    ))
    .unwrap_err();
    assert!(
        no_table.to_string().contains("cannot tell which table"),
        "{no_table}"
    );
    let null = super::expand(quote!(
        #[diesel(table_name = invoices, treat_none_as_null = true)]
        struct Patch {
            status: Option<String>,
        }
    ))
    .unwrap_err();
    assert!(null.to_string().contains("treat_none_as_null"), "{null}");
    let only_key = super::expand(quote!(
        #[diesel(table_name = invoices)]
        struct Patch {
            id: Uuid,
        }
    ))
    .unwrap_err();
    assert!(
        only_key.to_string().contains("no field to update"),
        "{only_key}"
    );
}
