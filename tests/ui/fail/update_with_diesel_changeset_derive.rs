#![allow(unused_imports)]
#[path = "../support/schema.rs"]
mod schema;

use schema::*;
use tenantry::prelude::*;
use tenantry::DbError;

// Diesel's own derive, explicitly: its assignments hide their columns.
#[derive(diesel::AsChangeset)]
#[diesel(table_name = invoices)]
struct InvoiceChanges {
    status: Option<String>,
    tenant_id: Option<uuid::Uuid>,
}

async fn apply(db: &Db, ctx: &TenantCtx<'_>, id: uuid::Uuid, changes: InvoiceChanges) -> Result<usize, DbError> {
    db.tx(ctx, async |conn| {
        Ok(diesel::update(Invoice::scoped(conn).filter(invoices::id.eq(id)))
            .set(changes)
            .execute(conn)
            .await?)
    })
    .await
}

fn main() {}
