//! diesel-async's `RunQueryDsl` imported beside the prelude: scoped queries and inserts still run
//! with tenantry's methods (they are inherent), in `db.tx` and in `db.query`.
#![allow(unused_imports)]
#![allow(
    dead_code,
    reason = "compiled, never called: these cases prove the forms type-check"
)]

use crate::common::schema::*;
use diesel_async::RunQueryDsl;
use tenantry::prelude::*;
use tenantry::DbError;

#[allow(dead_code)]
async fn forms(db: &Db, ctx: &TenantCtx<'_>, id: uuid::Uuid) -> Result<(), DbError> {
    db.tx(ctx, async |conn| {
        let _: Vec<Invoice> = Invoice::scoped(conn).load(conn).await?;
        let _: i64 = Invoice::scoped(conn).count().get_result(conn).await?;
        let _: Option<Invoice> = Invoice::scoped(conn)
            .filter(invoices::id.eq(id))
            .first(conn)
            .await
            .optional()?;
        let _: Vec<Invoice> = Invoice::scoped(conn)
            .into_boxed()
            .filter(invoices::status.eq("draft"))
            .get_results(conn)
            .await?;
        let _: Project = Project::insert(
            conn,
            NewProject {
                name: "Website".into(),
            },
        )
        .get_result(conn)
        .await?;
        let _: usize = Project::insert_many(
            conn,
            vec![NewProject {
                name: "Shop".into(),
            }],
        )
        .execute(conn)
        .await?;
        Ok::<_, DbError>(())
    })
    .await?;
    let _: Option<Invoice> = db
        .query(ctx, |conn| {
            Invoice::scoped(conn)
                .filter(invoices::id.eq(id))
                .first(conn)
                .optional()
        })
        .await?;
    Ok(())
}
