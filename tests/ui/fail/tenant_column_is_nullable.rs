use diesel::Queryable;
use tenantry::tenant_table;

diesel::table! {
    notes (id) {
        id -> Uuid,
        tenant_id -> Nullable<Uuid>,
    }
}

#[tenant_table]
#[derive(Queryable)]
#[diesel(table_name = notes)]
pub struct Note {
    pub id: uuid::Uuid,
    pub tenant_id: Option<uuid::Uuid>,
}

fn main() {}
