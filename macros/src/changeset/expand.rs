//! Code generation for tenantry's `#[derive(AsChangeset)]`: Diesel's `AsChangeset` for the
//! struct and for a reference to it, made of tenantry's checked `column.to(value)` assignments.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemStruct;

use super::model::{self, Change};

/// Expands the derive.
pub(crate) fn expand(item: TokenStream) -> syn::Result<TokenStream> {
    let item: ItemStruct = syn::parse2(item)?;
    let changes = model::read(&item)?;
    let owned = impl_for(&changes, None);
    let borrowed = impl_for(&changes, Some(quote!('__tenantry_update)));
    Ok(quote! {
        const _: () = {
            #owned
            #borrowed
        };
    })
}

/// The impl for the struct (`lifetime` = `None`) or for `&'lifetime Struct`.
fn impl_for(changes: &model::Changes, lifetime: Option<TokenStream>) -> TokenStream {
    let table = &changes.table;
    let ident = &changes.ident;
    let (_, ty_generics, where_clause) = changes.generics.split_for_impl();
    let mut generics = changes.generics.clone();
    if let Some(lt) = &lifetime {
        generics.params.insert(0, syn::parse_quote!(#lt));
    }
    let (impl_generics, _, _) = generics.split_for_impl();
    let self_ty = match &lifetime {
        Some(lt) => quote!(&#lt #ident #ty_generics),
        None => quote!(#ident #ty_generics),
    };
    let types = changes
        .changes
        .iter()
        .map(|c| change_type(table, c, lifetime.as_ref()));
    let values = changes
        .changes
        .iter()
        .map(|c| change_value(table, c, lifetime.is_some()));
    quote! {
        #[automatically_derived]
        impl #impl_generics ::tenantry::__private::diesel::query_builder::AsChangeset for #self_ty #where_clause {
            type Target = #table::table;
            type Changeset = (#(#types,)*);

            fn as_changeset(self) -> Self::Changeset {
                (#(#values,)*)
            }
        }
    }
}

fn change_type(table: &syn::Path, c: &Change, lifetime: Option<&TokenStream>) -> TokenStream {
    let column = &c.column;
    let ty = &c.ty;
    let value_ty = match lifetime {
        Some(lt) => quote!(&#lt #ty),
        None => quote!(#ty),
    };
    let set = quote! {
        ::tenantry::__private::Set<
            #table::#column,
            <#value_ty as ::tenantry::__private::diesel::expression::AsExpression<
                <#table::#column as ::tenantry::__private::diesel::Expression>::SqlType,
            >>::Expression,
        >
    };
    if c.optional {
        quote!(::core::option::Option<#set>)
    } else {
        set
    }
}

fn change_value(table: &syn::Path, c: &Change, borrowed: bool) -> TokenStream {
    let column = &c.column;
    let field = &c.field;
    let to = quote!(::tenantry::__private::SetColumn::to);
    match (c.optional, borrowed) {
        (true, false) => quote!(self.#field.map(|v| #to(#table::#column, v))),
        (true, true) => quote!(self.#field.as_ref().map(|v| #to(#table::#column, v))),
        (false, false) => quote!(#to(#table::#column, self.#field)),
        (false, true) => quote!(#to(#table::#column, &self.#field)),
    }
}
