#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

use tenantry::no_tenant_scope;

// Any handler could name a job and act in any tenant.
async fn escalate(db: &Db) -> Result<i64, DbError> {
    let job = tenantry::SystemJob::named("report");
    db.bypass(no_tenant_scope!(&job, "read every tenant"), async |conn| Ok(conn.get_result(invoices::table.count()).await?))
        .await
}

fn main() {}
