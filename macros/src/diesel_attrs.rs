//! Reading Diesel's own attributes (`#[diesel(..)]`) on a struct and its fields, which tenantry's
//! macros honour the way Diesel's derives do.

use syn::ext::IdentExt as _;
use syn::{Attribute, Field, Ident, Path};

/// The `#[diesel(..)]` options tenantry reads on a struct.
#[derive(Default)]
pub(crate) struct StructAttrs {
    /// `table_name = path`
    pub(crate) table_name: Option<Path>,
    /// `primary_key(a, b)`
    pub(crate) primary_key: Option<Vec<Ident>>,
    /// `treat_none_as_null = true`, with the token to point errors at
    pub(crate) treat_none_as_null: Option<Path>,
}

/// Reads the struct's `#[diesel(..)]` attributes, skipping options tenantry does not use.
pub(crate) fn struct_attrs(attrs: &[Attribute]) -> syn::Result<StructAttrs> {
    let mut found = StructAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("diesel")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table_name") {
                found.table_name = Some(meta.value()?.parse::<Path>()?);
            } else if meta.path.is_ident("primary_key") {
                let content;
                syn::parenthesized!(content in meta.input);
                let keys = content.parse_terminated(Ident::parse_any, syn::Token![,])?;
                found.primary_key = Some(keys.into_iter().collect());
            } else if meta.path.is_ident("treat_none_as_null") {
                let _: syn::Expr = meta.value()?.parse()?;
                found.treat_none_as_null = Some(meta.path.clone());
            } else {
                skip(&meta)?;
            }
            Ok(())
        })?;
    }
    Ok(found)
}

/// The SQL column a field maps to: `#[diesel(column_name = ..)]`, else the field's name.
pub(crate) fn column_name(field: &Field) -> syn::Result<Option<Ident>> {
    let mut found = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("diesel")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("column_name") {
                found = Some(meta.value()?.parse::<Ident>()?);
            } else {
                skip(&meta)?;
            }
            Ok(())
        })?;
    }
    Ok(found.or_else(|| field.ident.clone()))
}

/// Skips a `#[diesel(..)]` option tenantry does not read (`key = value` or `key(..)`).
fn skip(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}
