//! The model struct an attribute is placed on: its name, fields and Diesel table.

use syn::{Field, Ident, ItemStruct, Path, Visibility};

use crate::diesel_attrs;

/// One field and the SQL column it maps to.
pub(crate) struct ModelField {
    pub(crate) field: Field,
    /// `#[diesel(column_name = ..)]`, else the field's name.
    pub(crate) column: Ident,
}

/// What the expansion needs to know about the annotated struct.
pub(crate) struct Model {
    pub(crate) ident: Ident,
    pub(crate) vis: Visibility,
    pub(crate) fields: Vec<ModelField>,
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
    let named = match &item.fields {
        syn::Fields::Named(named) => &named.named,
        _ => {
            return Err(syn::Error::new_spanned(
                &item.ident,
                format!("`#[{attr_name}]` needs a struct with named fields, one per column"),
            ))
        }
    };
    let mut fields = Vec::with_capacity(named.len());
    for field in named {
        let column = diesel_attrs::column_name(field)?.expect("a named field has an identifier");
        fields.push(ModelField {
            field: field.clone(),
            column,
        });
    }
    let table = match table_arg {
        Some(t) => t,
        None => diesel_attrs::struct_attrs(&item.attrs)?
            .table_name
            .ok_or_else(|| {
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

impl Model {
    /// The field named `name`, if any.
    pub(crate) fn field(&self, name: &Ident) -> Option<&ModelField> {
        self.fields
            .iter()
            .find(|f| f.field.ident.as_ref() == Some(name))
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
