//! The example's Diesel schema, as `diesel print-schema` writes it: the source of truth for
//! columns and joins. tenantry's own tables live in `tenantry::schema`.

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
