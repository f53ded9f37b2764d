//! The example's Diesel schema, as `diesel print-schema` writes it: the source of truth for
//! columns and joins. tenantry's own tables live in `tenantry::schema`.
//!
//! The database keys `projects` and `invoices` by `(tenant_id, id)` (migration
//! `0002_citus_keys`, so that Citus can shard them by tenant). Here their key stays `id`:
//! `joinable!` follows a single-column key, and a scoped join adds the tenant condition to its
//! `ON` clause anyway, so the join is on both columns.

diesel::table! {
    currencies (code) {
        code -> Bpchar,
        name -> Text,
    }
}

diesel::table! {
    projects (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    invoices (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        project_id -> Uuid,
        number -> Text,
        amount_cents -> Int8,
        currency -> Bpchar,
        status -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(invoices -> projects (project_id));
diesel::joinable!(invoices -> currencies (currency));
diesel::allow_tables_to_appear_in_same_query!(currencies, projects, invoices);
