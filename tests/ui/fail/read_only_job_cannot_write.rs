#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

#[derive(Debug)]
struct JobError;
impl From<DbError> for JobError {
    fn from(_: DbError) -> Self { JobError }
}
impl From<tenantry::ScopeError> for JobError {
    fn from(_: tenantry::ScopeError) -> Self { JobError }
}
impl From<diesel::result::Error> for JobError {
    fn from(_: diesel::result::Error) -> Self { JobError }
}

async fn export(jobs: &tenantry::Jobs, tenant: uuid::Uuid) -> Result<usize, JobError> {
    let job = jobs.job("export");
    job.read_only_tx(tenant, "export the invoices", async |conn| {
        Ok(Project::insert(conn, NewProject { name: "oops".into() }).execute(conn).await?)
    })
    .await
}

fn main() {}
