use diesel::Queryable;
use tenantry::global_table;

diesel::table! {
    settings (id) {
        id -> Int4,
        tenant_id -> Uuid,
        value -> Text,
    }
}

// The struct leaves the tenant column out; the table still holds rows of tenants.
#[global_table]
#[derive(Queryable)]
#[diesel(table_name = settings)]
pub struct Setting {
    pub id: i32,
    pub value: String,
}

fn main() {}
