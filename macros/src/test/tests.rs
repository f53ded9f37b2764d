//! Expansion snapshots and error messages of `#[tenantry::test]`.

use quote::quote;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    prettyplease::unparse(&syn::parse2(tokens).expect("expansion parses as a file"))
}

#[test]
fn test_with_migrations() {
    let out = super::expand(
        quote!(migrations = crate::MIGRATIONS),
        quote! {
            #[should_panic(expected = "on purpose")]
            async fn invoices_stay_home(t: TestDb) -> Result<(), DbError> {
                let ctx = t.acme.as_partner();
                t.db.tx(&ctx, async |conn| Ok(())).await
            }
        },
    )
    .expect("expands");
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn test_without_migrations() {
    let out = super::expand(
        quote!(),
        quote! {
            async fn fixture(t: TestDb) {
                assert_ne!(t.acme.id, t.globex.id);
            }
        },
    )
    .expect("expands");
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn misuse_is_explained_all_at_once() {
    let err = super::expand(
        quote!(migration = MIGRATIONS, seed = 1),
        quote! {
            fn not_async<T>(a: TestDb, b: u8) {}
        },
    )
    .expect_err("must fail");
    let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 5, "{messages:#?}");
    assert!(messages[0].contains("unknown argument `migration`"));
    assert!(messages[1].contains("unknown argument `seed`"));
    assert!(messages[2].contains("goes on an `async fn`"));
    assert!(messages[3].contains("cannot be generic"));
    assert!(messages[4].contains("takes one parameter, the test database, not 2"));
    assert!(
        messages.iter().all(|m| m.contains("help: ")),
        "{messages:#?}"
    );
}

#[test]
fn a_test_needs_its_database_parameter() {
    let err = super::expand(
        quote!(),
        quote!(
            async fn nothing() {}
        ),
    )
    .expect_err("must fail");
    assert!(
        err.to_string()
            .contains("takes one parameter, the test database"),
        "{err}"
    );
}
