//! Code generation for `#[tenant_table]` and `#[global_table]`.
//!
//! Each declaration generates one impl (of the hidden `Declaration`) for the table (declaring a table twice is one
//! "conflicting implementations" error), compile-time checks against the `table!` schema, and,
//! for a tenant table, the model's `scoped`/`insert`/`insert_many` and its `New<Model>`.

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
    let refused = format!(
        "`{}` cannot be declared `#[global_table]`: its table `{sql_name}` has a `tenant_id` column, \
         so it holds rows of tenants; declare it with `#[tenant_table]` so that every query on it is scoped",
        model.ident
    );
    quote! {
        #[automatically_derived]
        impl ::tenantry::__private::Declaration for #table::table {
            type DeclaredKind = ::tenantry::__private::IsGlobal;
            const DECLARATION: ::tenantry::__private::TableDecl = ::tenantry::__private::TableDecl::global(
                ::tenantry::__private::sql_name::<#table::table>(#sql_name),
            );
        }
        // Checked against the `table!` schema, not the struct: a model that omits or renames
        // the field still cannot hide a tenant table.
        const _: () = {
            if ::tenantry::__private::has_column::<#table::table>("tenant_id") {
                ::core::panic!(#refused)
            }
        };
        // Nor can a table that `joinable!` ties to `tenants`, whatever its column is called.
        const _: fn() = || {
            #[allow(unused_imports)]
            use ::tenantry::__private::{NotTiedToTenants as _, TiedToTenants as _};
            ::tenantry::__private::TenantsProbe::<#table::table>::new()
                .tenantry_tenants()
                .global();
        };
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
            let name = f.field.ident.as_ref();
            f.column != column && !args.generated.iter().any(|g| Some(g) == name)
        })
        .map(|f| {
            let name = &f.field.ident;
            let ty = &f.field.ty;
            let diesel_attrs = f.field.attrs.iter().filter(|a| a.path().is_ident("diesel"));
            quote! { #(#diesel_attrs)* pub #name: #ty }
        })
        .collect();

    let scoped_doc = format!(
        "Starts a query on `{sql_name}` inside `conn`'s tenant transaction (`WHERE {column_name} = $tenant`)."
    );
    let new_doc = format!(
        "A new `{sql_name}` row, without `{column_name}` (taken from the tenant transaction) or generated columns."
    );
    let col_ty = quote!(#table::#column);
    let scoped_ty = quote!(::tenantry::__private::ScopedFrom<#table::table, #col_ty>);

    let insert = if new_fields.is_empty() {
        quote! {
            /// Inserts a row whose tenant column is the transaction's tenant.
            #vis fn insert<'tx, A: ::tenantry::__private::CanWrite>(
                conn: &::tenantry::__private::TenantConn<'tx, A>,
            ) -> ::tenantry::__private::ScopedInsert<'tx, ::tenantry::__private::InsertOne<#table::table, #col_ty, ()>> {
                ::tenantry::__private::insert::<#table::table, #col_ty, (), A>(conn, ())
            }
        }
    } else {
        quote! {
            /// Inserts one row; its tenant column is the transaction's tenant, never the caller's.
            #vis fn insert<'tx, A: ::tenantry::__private::CanWrite>(
                conn: &::tenantry::__private::TenantConn<'tx, A>,
                new: #new_ident,
            ) -> ::tenantry::__private::ScopedInsert<'tx, ::tenantry::__private::InsertOne<#table::table, #col_ty, #new_ident>> {
                ::tenantry::__private::insert::<#table::table, #col_ty, #new_ident, A>(conn, new)
            }

            /// Inserts many rows in one statement, each with the transaction's tenant.
            #vis fn insert_many<'tx, A: ::tenantry::__private::CanWrite>(
                conn: &::tenantry::__private::TenantConn<'tx, A>,
                rows: impl ::core::iter::IntoIterator<Item = #new_ident>,
            ) -> ::tenantry::__private::ScopedInsert<'tx, ::tenantry::__private::InsertMany<#table::table, #col_ty, #new_ident>> {
                ::tenantry::__private::insert_many::<#table::table, #col_ty, #new_ident, A>(conn, rows)
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

    let key_check = (column != "tenant_id").then(|| {
        let refused = format!(
            "`#[tenant_table(column = {column})]` on `{ident}`: table `{sql_name}` has a `tenant_id` column, \
             which is its tenant key; drop `column = {column}`"
        );
        quote! {
            const _: () = {
                if ::tenantry::__private::has_column::<#table::table>("tenant_id") {
                    ::core::panic!(#refused)
                }
            };
        }
    });

    quote! {
        #new_struct

        #[automatically_derived]
        impl ::tenantry::__private::Declaration for #table::table {
            type DeclaredKind = ::tenantry::__private::IsTenant<#col_ty>;
            const DECLARATION: ::tenantry::__private::TableDecl = ::tenantry::__private::TableDecl::tenant(
                ::tenantry::__private::sql_name::<#table::table>(#sql_name),
                #column_name,
            );
        }
        // The tenant column is checked against the `table!` schema: `uuid NOT NULL`.
        const _: fn() = || {
            fn tenant_key<C: ::tenantry::__private::TenantKeyColumn>() {}
            tenant_key::<#col_ty>();
        };
        #key_check

        #[automatically_derived]
        impl #ident {
            #[doc = #scoped_doc]
            #vis fn scoped<'tx, A: ::tenantry::__private::Access>(
                conn: &::tenantry::__private::TenantConn<'tx, A>,
            ) -> ::tenantry::__private::Scoped<'tx, #scoped_ty, A> {
                ::tenantry::__private::scoped::<#table::table, #col_ty, A>(conn)
            }

            #insert
        }
    }
}
