//! Expansion snapshots: every change to generated code shows as a reviewable diff.

use quote::quote;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    prettyplease::unparse(&syn::parse2(tokens).expect("expansion parses as a file"))
}

#[test]
fn tenant_table_expansion() {
    let out = super::tenant_table(
        quote!(generated(id, created_at)),
        quote! {
            #[derive(Queryable, Selectable)]
            #[diesel(table_name = invoices)]
            pub struct Invoice {
                pub id: Uuid,
                pub tenant_id: Uuid,
                pub number: String,
                #[diesel(column_name = amount_cents)]
                pub amount: i64,
                pub created_at: DateTime<Utc>,
            }
        },
    )
    .expect("expands");
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn tenant_table_with_only_tenant_column() {
    let out = super::tenant_table(
        quote!(table = schema::markers, generated(id)),
        quote! {
            pub struct Marker { pub id: i64, pub tenant_id: Uuid }
        },
    )
    .expect("expands");
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn global_table_expansion() {
    let out = super::global_table(
        quote!(table = currencies),
        quote! {
            pub struct Currency { pub code: String, pub name: String }
        },
    )
    .expect("expands");
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn errors_are_collected_and_point_at_tokens() {
    let err = super::tenant_table(
        quote!(generated(nope, tenant_id)),
        quote! {
            #[diesel(table_name = invoices)]
            pub struct Invoice { pub id: Uuid }
        },
    )
    .expect_err("must fail");
    let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[0].contains("has no `tenant_id` field"));
    assert!(messages[1].contains("`generated(nope)` names no field"));
    assert!(messages[2].contains("never generated"));
}

#[test]
fn missing_table_is_explained() {
    let err = super::tenant_table(
        quote!(),
        quote!(
            pub struct Invoice {
                pub tenant_id: Uuid,
            }
        ),
    )
    .expect_err("must fail");
    assert!(err.to_string().contains("cannot tell which table"), "{err}");
}
