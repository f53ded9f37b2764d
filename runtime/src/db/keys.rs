//! The tenant keys of a [`Db`](super::Db): read at start through the directory role, checked
//! against the app role's database, and refreshed while the application runs, so that a key
//! rotation (`tenantry rotate-tenant-key`) reaches every instance within
//! [`REFRESH`] (the database accepts the key before the newest until its grace ends).

#![allow(
    clippy::disallowed_methods,
    reason = "the directory role's literal read of the tenant keys"
)]

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::DbError;
use crate::pool::seal::{KeyRow, TenantKeys};
use crate::pool::PgPool;

/// How often the keys are read again.
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

pub(crate) const DIRECTORY_URL: &str = "TENANTRY_DIRECTORY_DATABASE_URL";

/// The keys and what keeps them fresh.
#[derive(Debug)]
pub(crate) struct Keys {
    pub(crate) keys: TenantKeys,
    /// Wakes the refresher now (a key was refused) or for good (the `Db` closed).
    wake: Notify,
    closed: std::sync::atomic::AtomicBool,
}

/// Reads the keys through the directory pool.
pub(crate) async fn fetch(pool: &PgPool) -> Result<Vec<KeyRow>, DbError> {
    let obj = pool.get().await.map_err(|e| {
        DbError::Config(format!(
            "{DIRECTORY_URL}: no connection for reading the tenant keys: {e}"
        ))
    })?;
    let mut conn: &diesel_async::AsyncPgConnection = &obj;
    diesel_async::RunQueryDsl::load::<KeyRow>(
        diesel::sql_query(concat!(
            "SELECT id, key FROM ",
            schema_name!(),
            ".tenantry_tenant_keys()"
        )),
        &mut conn,
    )
    .await
    .map_err(|e| {
        DbError::Config(format!(
            "{DIRECTORY_URL}: the tenant keys cannot be read ({e}): the database lacks \
                 tenantry's migrations (run `tenantry migrate`), or the URL's role is not \
                 `tenantry_directory` (the only role that may call tenantry_tenant_keys())"
        ))
    })
}

impl Keys {
    /// No keys yet: [`Keys::read`] reads them (at start, once the roles are checked).
    pub(crate) fn unloaded() -> Arc<Self> {
        Arc::new(Keys {
            keys: TenantKeys::empty(),
            wake: Notify::new(),
            closed: Default::default(),
        })
    }

    /// Reads the keys through the directory pool.
    pub(crate) async fn read(&self, pool: &PgPool) -> Result<(), DbError> {
        let rows = fetch(pool).await?;
        self.keys
            .replace(rows)
            .map_err(|e| DbError::Config(format!("{DIRECTORY_URL}: {e}")))
    }

    /// Keeps the keys fresh in a task of its own until [`Keys::close`] (or until the `Db` is gone).
    pub(crate) fn spawn_refresher(self: &Arc<Self>, pool: PgPool) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Keys> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let Some(keys) = weak.upgrade() else { return };
                let _ = tokio::time::timeout(REFRESH, keys.wake.notified()).await;
                if Arc::strong_count(&keys) == 1 {
                    // Every `Db` is gone.
                    return;
                }
                if std::sync::atomic::AtomicBool::load(&keys.closed, std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                match fetch(&pool).await.and_then(|rows| {
                    keys.keys.replace(rows).map_err(DbError::Config)
                }) {
                    Ok(()) => tracing::debug!("tenant keys refreshed"),
                    Err(e) => tracing::warn!(error = %e, "the tenant keys could not be refreshed; the ones read before stay in use"),
                }
            }
        });
    }

    /// Reads the keys again now (an entry was refused for an unknown or expired key).
    pub(crate) fn refresh_now(&self) {
        self.wake.notify_one();
    }

    /// Stops the refresher.
    pub(crate) fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }
}
