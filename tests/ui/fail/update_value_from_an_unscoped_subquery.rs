#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// An update's value read from every project, of every tenant.
async fn copy_name(db: &Db, ctx: &TenantCtx<'_>, id: uuid::Uuid) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        let any_name = projects::table.select(projects::name).single_value().assume_not_null();
        Ok(diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(invoices::number.to(any_name))
            .execute(conn)
            .await?)
    })
    .await
}

fn main() {}
