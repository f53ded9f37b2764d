//! Expansion snapshots and error messages of `#[requires_role]`.

use quote::quote;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    prettyplease::unparse(&syn::parse2(tokens).expect("expansion parses as a file"))
}

#[test]
fn partner_handler() {
    let out = super::expand(
        quote!(Partner),
        quote! {
            async fn create(ctx: TenantCtx, State(app): State<App>, Json(body): Json<New>) -> Result<Json<Invoice>, ApiError> {
                app.db.tx(&ctx, async |conn| todo()).await
            }
        },
    )
    .expect("expands");
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn owner_handler() {
    let out = super::expand(
        quote!(Owner),
        quote! {
            pub async fn summary(owner: OwnerProof, State(app): State<App>) -> Json<Summary> {
                summarize(&app, &owner).await
            }
        },
    )
    .expect("expands");
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn misuse_is_explained() {
    let unknown = super::expand(
        quote!(Admin),
        quote!(
            async fn h() {}
        ),
    )
    .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown role `Admin`"),
        "{unknown}"
    );
    let missing = super::expand(
        quote!(),
        quote!(
            async fn h() {}
        ),
    )
    .unwrap_err();
    assert!(missing.to_string().contains("needs the role"), "{missing}");
    let not_async = super::expand(
        quote!(Partner),
        quote!(
            fn h() {}
        ),
    )
    .unwrap_err();
    assert!(not_async.to_string().contains("async fn"), "{not_async}");
    let owner_ctx = super::expand(
        quote!(Owner),
        quote!(
            async fn h(ctx: TenantCtx) {}
        ),
    )
    .unwrap_err();
    assert!(
        owner_ctx.to_string().contains("has no tenant context"),
        "{owner_ctx}"
    );
    let not_fn = super::expand(
        quote!(Partner),
        quote!(
            struct S;
        ),
    )
    .unwrap_err();
    assert!(!not_fn.to_string().is_empty());
}
