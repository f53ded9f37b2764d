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
        quote!(generated(nope, org)),
        quote! {
            #[diesel(table_name = invoices)]
            pub struct Invoice {
                pub id: Uuid,
                #[diesel(column_name = tenant_id)]
                pub org: Uuid,
            }
        },
    )
    .expect_err("must fail");
    let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].contains("`generated(nope)` names no field"));
    assert!(
        messages[1].contains("never generated"),
        "a field mapped to the tenant column by `column_name` is the tenant column: {messages:#?}"
    );
}

/// The tenant column is left out of `New<Model>` by the column it maps to, not by the field's
/// name: a renamed field can never carry a caller's tenant into an insert.
#[test]
fn new_model_leaves_out_the_tenant_column_under_any_field_name() {
    let out = super::tenant_table(
        quote!(generated(id)),
        quote! {
            #[diesel(table_name = notes)]
            pub struct Note {
                pub id: Uuid,
                #[diesel(column_name = tenant_id)]
                pub org: Uuid,
                pub body: String,
            }
        },
    )
    .expect("expands");
    let text = pretty(out);
    let new_struct = text
        .split("pub struct NewNote")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("NewNote");
    assert!(new_struct.contains("pub body: String"), "{new_struct}");
    assert!(!new_struct.contains("org"), "{new_struct}");
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
