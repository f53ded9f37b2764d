//! Reading the struct of changes: its table, and each updated field's column and type.

use syn::{Ident, ItemStruct, Path, Type};

use crate::diesel_attrs;

/// One field that becomes an assignment.
pub(crate) struct Change {
    pub(crate) field: Ident,
    pub(crate) column: Ident,
    /// The field's type; for `Option<T>`, the inner `T` (the assignment is skipped on `None`).
    pub(crate) ty: Type,
    pub(crate) optional: bool,
}

/// The struct of changes.
pub(crate) struct Changes {
    pub(crate) ident: Ident,
    pub(crate) generics: syn::Generics,
    pub(crate) table: Path,
    pub(crate) changes: Vec<Change>,
}

const FORMAT: &str = "help: the correct format looks like `#[derive(AsChangeset)] #[diesel(table_name = invoices)] struct PatchInvoice { status: Option<String> }`";

/// Reads the struct, collecting every problem.
pub(crate) fn read(item: &ItemStruct) -> syn::Result<Changes> {
    let attrs = diesel_attrs::struct_attrs(&item.attrs)?;
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(path) = &attrs.treat_none_as_null {
        errors.push(syn::Error::new_spanned(
            path,
            "tenantry's `AsChangeset` does not support `treat_none_as_null`; use `Option<Option<T>>` fields and `column.to(None::<T>)` for explicit NULLs",
        ));
    }
    let table = match attrs.table_name {
        Some(t) => Some(t),
        None => {
            errors.push(syn::Error::new_spanned(
                &item.ident,
                format!(
                    "`#[derive(AsChangeset)]` cannot tell which table `{}` updates\n{FORMAT}",
                    item.ident
                ),
            ));
            None
        }
    };
    let primary_key = attrs
        .primary_key
        .unwrap_or_else(|| vec![Ident::new("id", proc_macro2::Span::call_site())]);
    let mut changes = Vec::new();
    match &item.fields {
        syn::Fields::Named(named) => {
            for field in &named.named {
                let column = diesel_attrs::column_name(field)?.expect("named field");
                if primary_key.contains(&column) {
                    continue;
                }
                let (ty, optional) = match option_inner(&field.ty) {
                    Some(inner) => (inner.clone(), true),
                    None => (field.ty.clone(), false),
                };
                changes.push(Change {
                    field: field.ident.clone().expect("named field"),
                    column,
                    ty,
                    optional,
                });
            }
        }
        _ => errors.push(syn::Error::new_spanned(
            &item.ident,
            format!("`#[derive(AsChangeset)]` needs a struct with named fields, one per column\n{FORMAT}"),
        )),
    }
    if changes.is_empty() && errors.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item.ident,
            format!(
                "`{}` has no field to update (the primary key is never updated)",
                item.ident
            ),
        ));
    }
    let mut iter = errors.into_iter();
    if let Some(mut first) = iter.next() {
        for e in iter {
            first.combine(e);
        }
        return Err(first);
    }
    Ok(Changes {
        ident: item.ident.clone(),
        generics: item.generics.clone(),
        table: table.expect("checked above"),
        changes,
    })
}

/// `T` of an `Option<T>` field (written `Option<T>`, `std::option::Option<T>`, ..).
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            syn::GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}
