//! The model struct an attribute is placed on: its name, fields and Diesel table.

use syn::{Attribute, Field, Ident, ItemStruct, Path, Visibility};

/// What the expansion needs to know about the annotated struct.
pub(crate) struct Model {
    pub(crate) ident: Ident,
    pub(crate) vis: Visibility,
    pub(crate) fields: Vec<Field>,
    /// The Diesel `table!` module (`invoices` or `schema::invoices`).
    pub(crate) table: Path,
}

/// Reads the struct; the table comes from the attribute's `table = ..` or else from Diesel's
/// own `#[diesel(table_name = ..)]`.
pub(crate) fn read(
    item: &ItemStruct,
    table_arg: Option<Path>,
    attr_name: &str,
) -> syn::Result<Model> {
    let fields: Vec<Field> = match &item.fields {
        syn::Fields::Named(named) => named.named.iter().cloned().collect(),
        _ => {
            return Err(syn::Error::new_spanned(
                &item.ident,
                format!("`#[{attr_name}]` needs a struct with named fields, one per column"),
            ))
        }
    };
    let table = match table_arg {
        Some(t) => t,
        None => diesel_table_name(&item.attrs)?.ok_or_else(|| {
            syn::Error::new_spanned(
                &item.ident,
                format!(
                    "`#[{attr_name}]` cannot tell which table `{}` maps to\n\
                     help: name it: `#[{attr_name}(table = invoices)]`, or add `#[diesel(table_name = invoices)]`",
                    item.ident
                ),
            )
        })?,
    };
    Ok(Model {
        ident: item.ident.clone(),
        vis: item.vis.clone(),
        fields,
        table,
    })
}

fn diesel_table_name(attrs: &[Attribute]) -> syn::Result<Option<Path>> {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("diesel")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table_name") {
                found = Some(meta.value()?.parse::<Path>()?);
            } else if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
            Ok(())
        })?;
    }
    Ok(found)
}

impl Model {
    /// The field named `name`, if any.
    pub(crate) fn field(&self, name: &Ident) -> Option<&Field> {
        self.fields.iter().find(|f| f.ident.as_ref() == Some(name))
    }

    /// The SQL name of the table: the last segment of its path.
    pub(crate) fn table_sql_name(&self) -> String {
        self.table
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default()
    }
}
