//! [`Db::connect`]: building the pools and the checks at start (roles, the seal, the listener
//! URL, sessions behind a pooler), each failure one line naming its setting.

use super::*;

pub(super) fn pool(
    url: &str,
    size: usize,
    timeouts: Timeouts,
    pooler: Pooler,
    purpose: Purpose,
) -> Result<PgPool, DbError> {
    pool::build(url, size, timeouts, pooler, purpose).map_err(DbError::Config)
}

/// `url` with its user replaced by `role` and no password: the default directory URL.
pub(super) fn with_role(url: &str, role: &str) -> Result<String, DbError> {
    let mut parsed = url::Url::parse(url).map_err(|e| {
        DbError::Config(format!(
            "{DIRECTORY_URL}: cannot derive it from the app URL ({e}); set it"
        ))
    })?;
    let derived = parsed.set_username(role).is_ok() && parsed.set_password(None).is_ok();
    if !derived {
        return Err(DbError::Config(format!(
            "{DIRECTORY_URL}: cannot derive it from the app URL; set it"
        )));
    }
    Ok(parsed.into())
}

/// The listener's URL: the configured one; else the app URL, unless that is a transaction
/// pooler's (a `LISTEN` there would stop hearing at the pooler's next hand-over).
pub(super) fn listen_url(config: &DbConfig) -> Option<&str> {
    match (&config.listen_url, config.pooler) {
        (Some(url), _) => Some(url),
        (None, Pooler::Direct) => Some(&config.app_url),
        (None, Pooler::Transaction) => None,
    }
}

/// A listener URL given (unless it is the app URL of a direct pool, which the app role's checks
/// cover) must lead to a session, never to a transaction pooler: that stops the start, naming the setting. One that
/// cannot be reached now is not fatal: the listener keeps trying, and the cache lives by its
/// TTL meanwhile.
pub(super) async fn check_listen_url(config: &DbConfig) -> Result<(), DbError> {
    let checked = |u: &&str| config.pooler == Pooler::Transaction || *u != config.app_url;
    let Some(url) = config.listen_url.as_deref().filter(checked) else {
        return Ok(());
    };
    match require_session(url, LISTEN_URL).await {
        Err(e @ DbError::Pooler(_)) => Err(e),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "{LISTEN_URL} cannot be reached yet: cached principals live at most the TTL \
                 until the directory listener connects"
            );
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// A connection for a check at start: a failure names `setting`.
pub(super) async fn start_conn(
    pool: &PgPool,
    setting: &str,
    pooler: Pooler,
) -> Result<Pooled, DbError> {
    use deadpool::managed::PoolError;
    match pool.get().await {
        Ok(obj) => Ok(Pooled::new(obj)),
        Err(PoolError::Backend(e)) => Err(connect_error(setting, pooler, e)),
        Err(PoolError::Timeout(_)) => Err(connect_error(
            setting,
            pooler,
            ConnectError::Unreachable("no connection within the connect timeout".into()),
        )),
        Err(e) => Err(DbError::Pool(format!("{setting}: {e}"))),
    }
}

/// Runs `work` on `conn` inside a read-only transaction (so that a transaction pooler keeps its
/// statements on one server); a statement the server lost names the setting to change.
pub(super) async fn in_read_only_tx<T>(
    conn: &Pooled,
    work: impl AsyncFnOnce(&mut &AsyncPgConnection) -> diesel::QueryResult<T>,
) -> Result<T, DbError> {
    let mut c: &AsyncPgConnection = conn;
    c.batch_execute("BEGIN READ ONLY").await?;
    let result = work(&mut c).await;
    let end = c
        .batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await;
    if conn.statement_lost() {
        return Err(DbError::Pooler(pooler::statement_lost_message(
            conn.pooler(),
        )));
    }
    let value = result?;
    end?;
    Ok(value)
}

/// The connection's role, and whether it escapes row-level security (superuser or
/// `BYPASSRLS`).
#[allow(
    clippy::disallowed_methods,
    reason = "a literal probe of the pool's role at connect, outside any tenant transaction"
)]
pub(super) async fn role_of(conn: &Pooled) -> Result<(String, bool), DbError> {
    in_read_only_tx(conn, async |c| {
        diesel::select((
            diesel::dsl::sql::<diesel::sql_types::Text>("current_user::text"),
            diesel::dsl::sql::<Bool>(
                "(SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)",
            ),
        ))
        .get_result(c)
        .await
    })
    .await
}

impl Db {
    /// Builds both pools and checks what they need, at start rather than at the first request:
    /// the tenant pool's role is subject to row-level security, the bypass pool's role (when
    /// configured) is not, and with [`Pooler::Direct`] the tenant pool's URL does not lead to a
    /// transaction pooler. Each failure is one line naming the setting.
    pub async fn connect(config: DbConfig) -> Result<Self, DbError> {
        let timeouts = config.timeouts()?;
        config.fair_share.validate().map_err(DbError::Config)?;
        let pooler = config.pooler;
        let app = pool(
            &config.app_url,
            config.max_connections,
            timeouts,
            pooler,
            Purpose::Tenant,
        )?;
        let bypass = match &config.bypass_url {
            Some(url) => Some(pool(
                url,
                config.max_bypass_connections,
                timeouts,
                pooler,
                Purpose::Other,
            )?),
            None => None,
        };
        let directory_url = match &config.directory_url {
            Some(url) => url.clone(),
            None => with_role(&config.app_url, &config.roles.directory)?,
        };
        if config.max_directory_connections == 0 {
            return Err(DbError::Config(
                "DbConfig::max_directory_connections must be at least 1".into(),
            ));
        }
        let directory_pool = pool(
            &directory_url,
            config.max_directory_connections,
            timeouts,
            pooler,
            Purpose::Other,
        )?;
        let keys = Keys::unloaded();
        let cache = PrincipalCache::new(
            config.principal_cache_capacity,
            config.principal_cache_ttl,
            config.principal_cache_max_age,
        );
        let listener = match listen_url(&config) {
            Some(url) if cache.is_enabled() => Some(
                Connector::new(url, timeouts, Pooler::Direct)
                    .map_err(|e| DbError::Config(format!("{LISTEN_URL}: {e}")))?,
            ),
            _ => None,
        };
        if cache.is_enabled() && listener.is_none() {
            tracing::warn!(
                ttl_ms = u64::try_from(config.principal_cache_ttl.as_millis()).unwrap_or(u64::MAX),
                "no directory listener (TENANTRY_LISTEN_DATABASE_URL is not set behind a \
                 transaction pooler): cached principals live at most the TTL"
            );
        }
        let directory = Arc::new(Directory::new(cache, listener, app.clone()));
        let db = Self {
            app,
            bypass,
            directory_pool,
            app_outage: Arc::new(Outage::new("app")),
            bypass_outage: Arc::new(Outage::new("bypass")),
            directory_outage: Arc::new(Outage::new("directory")),
            keys,
            ping_timeout: config.ping_timeout,
            pooler,
            tx_settings: tx_settings(pooler, &timeouts).into(),
            directory,
            citus: Arc::default(),
            fair: Arc::new(Fairness::new(
                config.max_connections,
                &config.fair_share,
                timeouts.wait,
                config.metrics_tenants,
            )),
        };
        db.check_schema().await?;
        db.check_app_role().await?;
        db.check_bypass_role().await?;
        start_conn(&db.directory_pool, DIRECTORY_URL, pooler).await?;
        db.keys.read(&db.directory_pool).await?;
        db.check_seal().await?;
        if db.directory.listens() {
            check_listen_url(&config).await?;
        }
        db.keys.spawn_refresher(db.directory_pool.clone());
        Ok(db)
    }

    /// One tenant transaction of the nil tenant, at start: the keys read through the directory
    /// role must verify on the app role's database, and the verified tenant must be the one
    /// entered. A directory URL that leads to another database, or a clock far from the
    /// server's, stops the start here, naming the setting.
    pub(super) async fn check_seal(&self) -> Result<(), DbError> {
        let ctx = TenantCtx::<crate::ctx::ReadOnly>::for_start_check();
        let verified = self
            .tx(&ctx, async |conn| {
                conn.verified_tenant().await.map_err(DbError::from)
            })
            .await;
        match verified {
            Ok(Some(t)) if t == ctx.tenant_id() => Ok(()),
            Ok(other) => Err(DbError::Config(format!(
                "{APP_URL}: the tenant seal does not hold on this database (a transaction \
                 entered for {} saw {other:?}): re-run tenantry's migrations",
                ctx.tenant_id()
            ))),
            Err(DbError::Seal(message)) if message.contains("42501") => {
                Err(DbError::Config(format!(
                    "{APP_URL}: its role may not enter a tenant ({message}): connect as \
                     tenantry_app, or GRANT EXECUTE ON FUNCTION tenantry_enter(uuid, boolean, \
                     bigint, integer, bytea) to the role"
                )))
            }
            Err(DbError::Seal(message)) => Err(DbError::Config(format!(
                "{DIRECTORY_URL} and {APP_URL} must lead to the same database: the tenant key \
                 read through the first does not verify on the second ({message})"
            ))),
            Err(e) => Err(e),
        }
    }

    /// tenantry's objects must be in this build's schema (`TENANTRY_SCHEMA`): a database that a
    /// CLI built with another name migrated stops the start, naming both schemas. On the
    /// directory pool, whose connections prepare no statement of tenantry's (the tenant pool's
    /// prepare the seal's, which would fail first, naming a missing schema). Only a mismatch
    /// found stops the start here: a connection or query that fails is left to the checks that
    /// follow, which name their setting.
    pub(super) async fn check_schema(&self) -> Result<(), DbError> {
        let Ok(conn) = start_conn(&self.directory_pool, DIRECTORY_URL, self.pooler).await else {
            return Ok(());
        };
        let found = in_read_only_tx(&conn, async |c| {
            crate::schema::placement::elsewhere(c).await
        })
        .await;
        match found {
            Ok(Some(found)) => Err(DbError::Config(format!(
                "{APP_URL}: {}",
                crate::schema::placement::mismatch(&found)
            ))),
            _ => Ok(()),
        }
    }

    pub(super) async fn check_app_role(&self) -> Result<(), DbError> {
        let conn = start_conn(&self.app, APP_URL, self.pooler).await?;
        let (role, privileged) = role_of(&conn).await?;
        if privileged {
            return Err(DbError::PrivilegedAppRole { role });
        }
        let found = in_read_only_tx(&conn, async |c| {
            crate::schema::roles_check::escalations(c, &role, &[]).await
        })
        .await?;
        if let Some(escalation) = found.into_iter().next() {
            return Err(DbError::AppRoleEscalates { escalation });
        }
        let citus = citus_check::check_set_commands(&conn, &role, APP_URL).await?;
        self.citus
            .store(citus, std::sync::atomic::Ordering::Relaxed);
        if self.pooler == Pooler::Direct {
            self.check_own_sessions(&conn).await?;
        }
        Ok(())
    }

    /// Straight to PostgreSQL, two connections are two sessions; behind a transaction pooler
    /// they share server backends, and the statement cache would fail under load. The second
    /// connection comes from the pool, or, for a pool of one, is opened for the check alone.
    pub(super) async fn check_own_sessions(&self, conn: &Pooled) -> Result<(), DbError> {
        let (shared, other_lost) = if self.app.status().max_size >= 2 {
            let other = start_conn(&self.app, APP_URL, self.pooler).await?;
            (
                pooler::shared_backend(conn, &other).await,
                other.statement_lost(),
            )
        } else {
            let other = self
                .app
                .manager()
                .connect()
                .await
                .map_err(|e| connect_error(APP_URL, self.pooler, e))?;
            (
                pooler::shared_backend(conn, &other).await,
                other.statement_lost(),
            )
        };
        if conn.statement_lost() || other_lost {
            return Err(DbError::Pooler(pooler::statement_lost_message(self.pooler)));
        }
        match shared? {
            Some(shared) => Err(DbError::Pooler(pooler::direct_behind_pooler(
                APP_URL, shared,
            ))),
            None => Ok(()),
        }
    }

    /// The bypass role must exist and bypass row-level security: under it, with no tenant set,
    /// audited cross-tenant work would otherwise see no tenant's rows and report nothing.
    pub(super) async fn check_bypass_role(&self) -> Result<(), DbError> {
        let Some(bypass) = &self.bypass else {
            return Ok(());
        };
        let conn = start_conn(bypass, BYPASS_URL, self.pooler).await?;
        let (role, bypasses) = role_of(&conn).await?;
        if !bypasses {
            return Err(DbError::Config(format!(
                "{BYPASS_URL}: role `{role}` does not bypass row-level security, so audited \
                 cross-tenant work would see no tenant's rows; connect as tenantry_bypass \
                 (BYPASSRLS, created by the migrations)"
            )));
        }
        Ok(())
    }
}
