// The schema shared by the compile-fail cases and the integration tests
// (tests/it/common/schema.rs includes it; tests/it/compiles uses it from there).
use chrono::{DateTime, Utc};
use diesel::{Queryable, Selectable};
use tenantry::{global_table, tenant_table};
use uuid::Uuid;

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

diesel::table! {
    currencies (code) {
        code -> Bpchar,
        name -> Text,
    }
}

diesel::joinable!(invoices -> projects (project_id));
diesel::joinable!(invoices -> currencies (currency));
diesel::allow_tables_to_appear_in_same_query!(projects, invoices, currencies);

#[tenant_table(generated(id, created_at))]
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = projects)]
pub struct Project {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[tenant_table(generated(id, created_at))]
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = invoices)]
pub struct Invoice {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub project_id: Uuid,
    pub number: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[global_table]
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = currencies)]
pub struct Currency {
    pub code: String,
    pub name: String,
}
