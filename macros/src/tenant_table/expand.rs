//! Code generation for `#[tenant_table]` and `#[global_table]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ItemStruct;

use super::attr::{self, Args, Kind};
use super::{check, model};

/// Expands the attribute; on error, emits the struct untouched beside the errors so that users
/// see only the real problem.
pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let item: ItemStruct = syn::parse2(item)?;
    let args = attr::parse(kind, args)?;
    let model = model::read(&item, args.table.clone(), kind.attr_name())?;
    check::check(kind, &args, &model)?;
    let generated = match kind {
        Kind::Tenant => expand_tenant(&args, &model),
        Kind::Global => expand_global(&model),
    };
    Ok(quote! {
        #item
        #generated
    })
}

fn expand_global(model: &model::Model) -> TokenStream {
    let table = &model.table;
    let sql_name = model.table_sql_name();
    quote! {
        #[automatically_derived]
        impl ::tenantry::__private::Sealed for #table::table {}
        #[automatically_derived]
        impl ::tenantry::Declared for #table::table {
            type Kind = ::tenantry::IsGlobal;
            const DECL: ::tenantry::TableDecl = ::tenantry::TableDecl::Global { table: #sql_name };
        }
        #[automatically_derived]
        impl ::tenantry::GlobalTable for #table::table {}
    }
}

fn expand_tenant(args: &Args, model: &model::Model) -> TokenStream {
    let table = &model.table;
    let ident = &model.ident;
    let vis = &model.vis;
    let column = check::tenant_column(args);
    let sql_name = model.table_sql_name();
    let column_name = column.to_string();
    let new_ident = args
        .new_name
        .clone()
        .unwrap_or_else(|| format_ident!("New{}", ident));

    let new_fields: Vec<_> = model
        .fields
        .iter()
        .filter(|f| {
            let name = f.ident.as_ref();
            name != Some(&column) && !args.generated.iter().any(|g| Some(g) == name)
        })
        .map(|f| {
            let name = &f.ident;
            let ty = &f.ty;
            let diesel_attrs = f.attrs.iter().filter(|a| a.path().is_ident("diesel"));
            quote! { #(#diesel_attrs)* pub #name: #ty }
        })
        .collect();

    let scoped_doc = format!(
        "Starts a query on `{sql_name}` kept inside `ctx`'s tenant (`WHERE {column_name} = $ctx`)."
    );
    let new_doc = format!(
        "A new `{sql_name}` row, without `{column_name}` (taken from the tenant context) or generated columns."
    );

    let insert = if new_fields.is_empty() {
        quote! {
            /// Inserts a row whose tenant column is the context's tenant.
            #vis fn insert<A: ::tenantry::Access>(
                ctx: &::tenantry::TenantCtx<A>,
            ) -> ::tenantry::ScopedInsert<::tenantry::InsertOne<#table::table, ()>> {
                ::tenantry::__private::insert::<#table::table, (), A>(ctx, ())
            }
        }
    } else {
        quote! {
            /// Inserts one row; its tenant column is the context's tenant, never the caller's.
            #vis fn insert<A: ::tenantry::Access>(
                ctx: &::tenantry::TenantCtx<A>,
                new: #new_ident,
            ) -> ::tenantry::ScopedInsert<::tenantry::InsertOne<#table::table, #new_ident>> {
                ::tenantry::__private::insert::<#table::table, #new_ident, A>(ctx, new)
            }

            /// Inserts many rows in one statement, each with the context's tenant.
            #vis fn insert_many<A: ::tenantry::Access>(
                ctx: &::tenantry::TenantCtx<A>,
                rows: impl ::core::iter::IntoIterator<Item = #new_ident>,
            ) -> ::tenantry::ScopedInsert<::tenantry::InsertMany<#table::table, #new_ident>> {
                ::tenantry::__private::insert_many::<#table::table, #new_ident, A>(ctx, rows)
            }
        }
    };

    let new_struct = if new_fields.is_empty() {
        quote! {}
    } else {
        quote! {
            #[doc = #new_doc]
            #[derive(Debug, Clone, ::tenantry::__private::diesel::Insertable)]
            #[diesel(table_name = #table)]
            #vis struct #new_ident {
                #(#new_fields,)*
            }
        }
    };

    quote! {
        #new_struct

        #[automatically_derived]
        impl ::tenantry::__private::Sealed for #table::table {}
        #[automatically_derived]
        impl ::tenantry::Declared for #table::table {
            type Kind = ::tenantry::IsTenant;
            const DECL: ::tenantry::TableDecl = ::tenantry::TableDecl::Tenant {
                table: #sql_name,
                tenant_column: #column_name,
            };
        }
        #[automatically_derived]
        impl ::tenantry::TenantTable for #table::table {
            type TenantColumn = #table::#column;
        }

        #[automatically_derived]
        impl #ident {
            #[doc = #scoped_doc]
            #vis fn scoped<A: ::tenantry::Access>(
                ctx: &::tenantry::TenantCtx<A>,
            ) -> ::tenantry::Scoped<::tenantry::ScopedTable<#table::table>> {
                ::tenantry::__private::scoped::<#table::table, A>(ctx)
            }

            #insert
        }
    }
}
