//! Diesel schema of tenantry's own tables (`tenants`, `users`, `memberships`, `audit_log`).

#![allow(missing_docs, unreachable_pub)]

diesel::table! {
    tenants (id) {
        id -> Uuid,
        slug -> Text,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Nullable<Text>,
        is_owner -> Bool,
        cf_sub -> Nullable<Text>,
        created_at -> Timestamptz,
        kind -> Text,
    }
}

diesel::table! {
    memberships (user_id, tenant_id) {
        user_id -> Uuid,
        tenant_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        at -> Timestamptz,
        actor_user_id -> Nullable<Uuid>,
        actor_email -> Text,
        action -> Text,
        reason -> Text,
        tenant_id -> Nullable<Uuid>,
        request_id -> Nullable<Text>,
        location -> Nullable<Text>,
    }
}

diesel::joinable!(memberships -> tenants (tenant_id));
diesel::joinable!(memberships -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(tenants, users, memberships, audit_log);

diesel::table! {
    tenantry_declared_tables (table_schema, table_name) {
        table_schema -> Text,
        table_name -> Text,
        kind -> Text,
        tenant_column -> Nullable<Text>,
        declared_at -> Timestamptz,
    }
}
