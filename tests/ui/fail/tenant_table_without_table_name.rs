use tenantry::tenant_table;

#[tenant_table(generated(idd))]
pub struct Note {
    pub id: i32,
    pub tenant_id: uuid::Uuid,
}

fn main() {}
