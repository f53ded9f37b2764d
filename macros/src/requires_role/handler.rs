//! Reading the handler: which parameters tenantry fills (`TenantCtx`, the role proof, the
//! principal) and which stay axum extractors. Rejects what cannot be a role-checked handler.

use syn::{FnArg, ItemFn, Pat, Type};

use super::attr::RoleName;

/// A parameter tenantry fills from the role extractor.
pub(crate) struct Filled {
    pub(crate) ctx: Option<Box<Pat>>,
    /// The proof parameter and its written type (kept, so the user's import stays used).
    pub(crate) proof: Option<(Box<Pat>, Box<Type>)>,
    pub(crate) principal: Option<(Box<Pat>, Box<Type>)>,
    /// The types of the parameters left to axum (checked: none may be a type tenantry fills,
    /// written under another name).
    pub(crate) kept_types: Vec<Type>,
}

fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// Splits the handler's parameters; collects every problem.
pub(crate) fn read(role: RoleName, item: &mut ItemFn) -> syn::Result<Filled> {
    let mut errors: Vec<syn::Error> = Vec::new();
    if item.sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            item.sig.fn_token,
            "`#[requires_role]` goes on an `async fn` axum handler",
        ));
    }
    let mut filled = Filled {
        ctx: None,
        proof: None,
        principal: None,
        kept_types: Vec::new(),
    };
    let mut kept = syn::punctuated::Punctuated::<FnArg, syn::Token![,]>::new();
    for arg in std::mem::take(&mut item.sig.inputs) {
        let FnArg::Typed(pat_type) = &arg else {
            errors.push(syn::Error::new_spanned(
                &arg,
                "`#[requires_role]` handlers are free functions, not methods",
            ));
            continue;
        };
        let typed = (pat_type.pat.clone(), pat_type.ty.clone());
        let duplicate = match last_segment(&pat_type.ty).as_deref() {
            Some("TenantCtx") => {
                if role == RoleName::Owner {
                    errors.push(syn::Error::new_spanned(
                        &pat_type.ty,
                        "an `Owner` route acts across tenants and has no tenant context\n\
                         help: require `Partner` to act inside a tenant (Owners pass), or take `owner: OwnerProof` and use `no_tenant_scope!(&owner, \"..\")`",
                    ));
                    continue;
                }
                filled.ctx.replace(typed.0).is_some()
            }
            Some("Proof" | "OwnerProof") => filled.proof.replace(typed).is_some(),
            Some("Principal") => filled.principal.replace(typed).is_some(),
            _ => {
                if !mentions_impl_trait(&pat_type.ty) {
                    filled.kept_types.push((*pat_type.ty).clone());
                }
                kept.push(arg);
                continue;
            }
        };
        if duplicate {
            errors.push(syn::Error::new_spanned(
                &pat_type.ty,
                "this parameter appears twice",
            ));
        }
    }
    item.sig.inputs = kept;
    let mut iter = errors.into_iter();
    match iter.next() {
        None => Ok(filled),
        Some(mut first) => {
            for e in iter {
                first.combine(e);
            }
            Err(first)
        }
    }
}

/// Whether `ty` holds an `impl Trait` (which cannot be named in the probe).
fn mentions_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    finder.0
}

/// Adds `'_` to `TenantCtx`, `Proof<..>` and `OwnerProof` written without a lifetime.
pub(crate) fn add_anonymous_lifetime(ty: &mut Type) {
    let Type::Path(path) = ty else { return };
    let Some(last) = path.path.segments.last_mut() else {
        return;
    };
    if !matches!(
        last.ident.to_string().as_str(),
        "TenantCtx" | "Proof" | "OwnerProof"
    ) {
        return;
    }
    let lifetime: syn::GenericArgument = syn::parse_quote!('_);
    match &mut last.arguments {
        syn::PathArguments::None => {
            last.arguments = syn::PathArguments::AngleBracketed(syn::parse_quote!(<'_>));
        }
        syn::PathArguments::AngleBracketed(args) => {
            if !args
                .args
                .iter()
                .any(|a| matches!(a, syn::GenericArgument::Lifetime(_)))
            {
                args.args.insert(0, lifetime);
            }
        }
        syn::PathArguments::Parenthesized(_) => {}
    }
}
