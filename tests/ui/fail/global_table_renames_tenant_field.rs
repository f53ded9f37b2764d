use diesel::{Queryable, Selectable};
use tenantry::global_table;

diesel::table! {
    settings (id) {
        id -> Int4,
        tenant_id -> Uuid,
    }
}

// The field is renamed; the column is still the tenant column.
#[global_table]
#[derive(Queryable, Selectable)]
#[diesel(table_name = settings)]
pub struct Setting {
    pub id: i32,
    #[diesel(column_name = tenant_id)]
    pub org: uuid::Uuid,
}

fn main() {}
