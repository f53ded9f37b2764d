#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use diesel::sql_types::Text;
use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

const STATUS_SQL: &str = "status = 'paid'";

// `tenantry::sql!` takes one string literal: text built at run time, or any text not written in
// the call, is refused where it is written.
async fn search(db: &Db, ctx: &TenantCtx<'_>, name: &str) -> Result<Vec<Invoice>, DbError> {
    db.tx(ctx, async |conn| {
        Ok(Invoice::scoped(conn)
            .filter(tenantry::sql!(format!("number = '{name}'")))
            .filter(tenantry::sql!(concat!("status = ", "'paid'")))
            .filter(tenantry::sql!(STATUS_SQL))
            .filter(tenantry::sql!(Text, name).eq("x"))
            .load(conn)
            .await?)
    })
    .await
}

fn main() {}
