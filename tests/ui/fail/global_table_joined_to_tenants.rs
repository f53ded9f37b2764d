use diesel::{Queryable, Selectable};
use tenantry::global_table;
use tenantry::schema::tenants;

diesel::table! {
    notes (id) {
        id -> Int4,
        org_id -> Uuid,
        body -> Text,
    }
}

// The tenant column is named otherwise, but the schema says whose rows these are.
diesel::joinable!(notes -> tenants (org_id));

#[global_table]
#[derive(Queryable, Selectable)]
#[diesel(table_name = notes)]
pub struct Note {
    pub id: i32,
    pub org_id: uuid::Uuid,
    pub body: String,
}

fn main() {}
