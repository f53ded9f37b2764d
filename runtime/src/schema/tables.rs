//! Diesel schema of tenantry's own tables (`tenants`, `users`, `memberships`, `audit_log` and its
//! hash chain), all in the schema [`NAME`] (`tenantry` unless `TENANTRY_SCHEMA` named another at
//! build time; never on an application's search path: an application's own `users` or `tenants`
//! stay its own).

#![allow(unreachable_pub)]

/// The PostgreSQL schema that holds tenantry's own tables, functions and views: `tenantry`, or
/// the name `TENANTRY_SCHEMA` gave when tenantry was built (a lowercase SQL identifier, checked
/// by the build). The application and the `tenantry` CLI that migrates its database must be
/// built with the same name (docs/settings.md); the tables below are declared in it.
pub const NAME: &str = schema_name!();

/// The `table!`s of tenantry's tables, in the schema `$schema` (`tables_in_schema.rs`, written
/// by the build script, calls it with [`NAME`]: a Diesel table's schema is part of its type).
macro_rules! tables {
    ($schema:ident) => {
        diesel::table! {
            /// The tenants: one row per customer organisation (global; the app role sees the active one).
            $schema.tenants (id) {
                /// The tenant's id (`X-Tenant` may name it).
                id -> Uuid,
                /// Its URL-safe name (`X-Tenant` may name it), unique.
                slug -> Text,
                /// Its display name.
                name -> Text,
                /// When it was created.
                created_at -> Timestamptz,
            }
        }

        diesel::table! {
            /// The identities: a person by email, or a Cloudflare service token by its common name
            /// (`kind`); `is_owner` is the global Owner role.
            $schema.users (id) {
                /// The identity's id.
                id -> Uuid,
                /// Its key: a person's email, or a service token's common name (`<client id>.access`); unique case-insensitively.
                email -> Text,
                /// A name to show, if any.
                display_name -> Nullable<Text>,
                /// The global Owner role.
                is_owner -> Bool,
                /// The last Cloudflare `sub` seen for it.
                cf_sub -> Nullable<Text>,
                /// When it was created.
                created_at -> Timestamptz,
                /// `person` or `service` (a Cloudflare Access service token).
                kind -> Text,
            }
        }

        diesel::table! {
            /// Who may act in which tenant, and with which role (`partner` or `client_viewer`).
            $schema.memberships (user_id, tenant_id) {
                /// The member.
                user_id -> Uuid,
                /// The tenant.
                tenant_id -> Uuid,
                /// `partner` or `client_viewer`.
                role -> Text,
                /// When it was granted.
                created_at -> Timestamptz,
            }
        }

        diesel::table! {
            /// Every audited bypass and job: who, what, why, where (append-only).
            $schema.audit_log (id) {
                /// Order of writing.
                id -> Int8,
                /// When.
                at -> Timestamptz,
                /// The acting user, if a user acted.
                actor_user_id -> Nullable<Uuid>,
                /// The actor's email, or `job:<name>`.
                actor_email -> Text,
                /// What was done.
                action -> Text,
                /// Why isolation was lifted (never empty).
                reason -> Text,
                /// The tenant acted in, if one.
                tenant_id -> Nullable<Uuid>,
                /// The request, if any.
                request_id -> Nullable<Text>,
                /// The caller's source location.
                location -> Nullable<Text>,
            }
        }

        diesel::table! {
            /// The audit log's hash chain, one link per `audit_log` row in commit order, written only
            /// by the trigger that links a row when its transaction commits (see [`crate::schema::audit_chain`]).
            $schema.audit_log_chain (seq) {
                /// The position in the chain: 1, 2, … in the order the rows' transactions committed.
                seq -> Int8,
                /// The `audit_log` row this link seals.
                audit_id -> Int8,
                /// The previous link's hash (32 zero bytes for the first link).
                prev_hash -> Binary,
                /// SHA-256 over `prev_hash` and the row's content.
                hash -> Binary,
            }
        }

        diesel::table! {
            /// The chain's head: its one row names the last link (`seq` 0 and no row while empty).
            $schema.audit_log_chain_head (singleton) {
                /// Always `true`: the table has one row.
                singleton -> Bool,
                /// How many links the chain has.
                seq -> Int8,
                /// The last linked `audit_log` row.
                audit_id -> Nullable<Int8>,
                /// Its hash.
                hash -> Binary,
            }
        }

        diesel::joinable!(audit_log_chain -> audit_log (audit_id));
        diesel::joinable!(memberships -> tenants (tenant_id));
        diesel::joinable!(memberships -> users (user_id));
        diesel::allow_tables_to_appear_in_same_query!(
            tenants,
            users,
            memberships,
            audit_log,
            audit_log_chain,
            audit_log_chain_head
        );

        diesel::table! {
            /// The tables declared to tenantry (tenant or global), which `tenantry doctor` checks.
            $schema.tenantry_declared_tables (table_schema, table_name) {
                /// The table's schema.
                table_schema -> Text,
                /// The table's name.
                table_name -> Text,
                /// `tenant` or `global`.
                kind -> Text,
                /// A tenant table's tenant column.
                tenant_column -> Nullable<Text>,
                /// When it was last declared.
                declared_at -> Timestamptz,
            }
        }
    };
}

include!(concat!(env!("OUT_DIR"), "/tables_in_schema.rs"));
