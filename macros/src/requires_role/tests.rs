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

/// Every parameter left to axum is probed (a type tenantry fills, under another name, is refused
/// there), except an `impl Trait` one, which cannot be named in the probe.
#[test]
fn parameters_left_to_axum_are_probed() {
    let out = super::expand(
        quote!(Partner),
        quote! {
            async fn h(ctx: Ctx<'_>, State(app): State<App>, body: impl Sized) {}
        },
    )
    .expect("expands")
    .to_string();
    assert!(out.contains("ParamProbe :: < Ctx < '_ > >"), "{out}");
    assert!(out.contains("ParamProbe :: < State < App > >"), "{out}");
    assert!(!out.contains("ParamProbe :: < impl"), "{out}");
}

/// The extractor is armed first, so that what it grants ends with the handler, and rebound under
/// the name a borrow error shows.
#[test]
fn the_extractor_is_armed_and_named() {
    let out = super::expand(
        quote!(ClientViewer),
        quote! {
            async fn h() {}
        },
    )
    .expect("expands")
    .to_string();
    let armed = out.find(". arm ()").expect("armed");
    let body = out.rfind("{ }").expect("the body");
    assert!(armed < body, "{out}");
    assert!(
        out.contains(&format!(
            "let {} = tenantry_extractor",
            super::expand::REQUEST_LOCAL
        )),
        "{out}"
    );
    assert!(
        out.contains("ByRole < :: tenantry :: identity :: InTenant"),
        "{out}"
    );
}
