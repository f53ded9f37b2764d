use diesel::Queryable;
use tenantry::global_table;

diesel::table! {
    settings (id) {
        id -> Int4,
        tenant_id -> Uuid,
    }
}

#[global_table]
#[derive(Queryable)]
#[diesel(table_name = settings)]
pub struct Setting {
    pub id: i32,
    pub tenant_id: uuid::Uuid,
}

fn main() {}
