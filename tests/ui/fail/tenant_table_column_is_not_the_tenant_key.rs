use diesel::Queryable;
use tenantry::tenant_table;

diesel::table! {
    notes (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        project_id -> Uuid,
    }
}

// Scoped by the wrong column: every query would filter on project_id.
#[tenant_table(column = project_id)]
#[derive(Queryable)]
#[diesel(table_name = notes)]
pub struct Note {
    pub id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    pub project_id: uuid::Uuid,
}

fn main() {}
