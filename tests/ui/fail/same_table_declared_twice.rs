#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::tenant_table;

// A second model for `projects`: one clear error, not a runaway compiler.
#[tenant_table(generated(id, created_at))]
#[derive(diesel::Queryable)]
#[diesel(table_name = projects)]
pub struct ProjectAgain {
    pub id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn main() {}
