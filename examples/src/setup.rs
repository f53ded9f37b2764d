//! Database setup of the example, on the migration role's plain Diesel connection (this module
//! does not import tenantry's prelude, so `diesel_async::RunQueryDsl` is unambiguous here).

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use uuid::Uuid;

use crate::{models, ExampleError};

/// `postgres://user@host:port/db` → (`…/postgres`, `db`, URL of `role` on `db`).
pub(crate) fn split_url(url: &str) -> Result<(String, String, String, String), ExampleError> {
    let bad = || ExampleError::Url(format!("`{url}` is not a postgres://user@host:port/database URL"));
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")).ok_or_else(bad)?;
    let (auth, host_db) = rest.split_once('@').ok_or_else(bad)?;
    let (host, db) = host_db.split_once('/').ok_or_else(bad)?;
    let db = db.split('?').next().unwrap_or(db);
    if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad());
    }
    let _ = auth;
    Ok((
        format!("postgres://{auth}@{host}/postgres"),
        db.to_owned(),
        format!("postgres://tenantry_app@{host}/{db}"),
        format!("postgres://tenantry_bypass@{host}/{db}"),
    ))
}

pub(crate) async fn setup(url: &str) -> Result<(String, String), ExampleError> {
    let (server, db, app, bypass) = split_url(url)?;
    let mut admin = AsyncPgConnection::establish(&server).await?;
    let exists: bool = {
        use diesel_async::RunQueryDsl;
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{db}')"
        )))
        .get_result(&mut admin)
        .await?
    };
    if !exists {
        admin.batch_execute(&format!("CREATE DATABASE {db}")).await?;
    }
    let mut conn = AsyncPgConnection::establish(url).await?;
    tenantry::migrate(&mut conn).await?;
    tenantry::run_migrations(&mut conn, "example", models::MIGRATIONS).await?;
    tenantry::declare_tables(&mut conn, &models::declarations()).await?;
    Ok((app, bypass))
}

pub(crate) async fn seed_tenant(url: &str, slug: &str, name: &str) -> Result<Uuid, ExampleError> {
    use diesel::ExpressionMethods;
    use diesel_async::RunQueryDsl;
    use tenantry::schema::tenants;
    let mut conn = AsyncPgConnection::establish(url).await?;
    diesel::insert_into(tenants::table)
        .values((tenants::slug.eq(slug), tenants::name.eq(name)))
        .on_conflict(tenants::slug)
        .do_nothing()
        .execute(&mut conn)
        .await?;
    Ok(diesel::QueryDsl::select(
        diesel::QueryDsl::filter(tenants::table, tenants::slug.eq(slug)),
        tenants::id,
    )
    .get_result(&mut conn)
    .await?)
}

