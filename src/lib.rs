#![doc = include_str!("../docs/crate.md")]
//!
//! ## Where the names are
//!
//! The root holds what an application writes: the macros, [`Db`] and its configuration, the
//! tenant context and connections, the audited bypass, [`Jobs`], the errors, and the migration
//! entry points. The rest sits in modules named for what they hold: [`prelude`] (the imports of a
//! module that queries), [`identity`] (extractors, principals, roles), [`auth`] (authentication
//! modes), [`settings`], [`schema`] (tenantry's own tables), [`migrations`], [`doctor`],
//! [`audit_chain`], [`fairness`], [`pooler`], [`tls`], and [`bounds`]: the traits that appear in
//! bounds and compile errors but that an application rarely names. Optional parts are behind
//! cargo features: [`serve`] (`serve`, on by default), `citus` (`tenantry::citus`), `log-limit`
//! (`tenantry::log_limit`) and `testing` (`tenantry::testing`, `#[tenantry::test]`; for
//! `[dev-dependencies]` only). `public-api.txt` at the repository's root lists every public
//! name; a test keeps it current.

pub use tenantry_runtime::ctx::{
    no_tenant_scope, Actor, AuditedBypass, BypassConn, ReadOnly, ReadWrite, TenantConn, TenantCtx,
};
pub use tenantry_runtime::db::{Db, DbConfig};
pub use tenantry_runtime::error::{DbError, ScopeError};
pub use tenantry_runtime::jobs::{Jobs, SystemJob};
pub use tenantry_runtime::schema::{migrate, migrate_with, MigrateError};
pub use tenantry_runtime::scope::{declare_tables, excluded, TableDecl};

/// The traits and types that appear in bounds, signatures and compile errors: an application
/// rarely names them, but the compiler does ("the trait `ReadsOnlyGlobalTables` is not
/// implemented for ..."), and each one's documentation says what it guards and how to satisfy
/// it.
pub mod bounds {
    pub use tenantry_runtime::ctx::{
        Access, BypassActor, CanWrite, FromBareId, NoAmbientTenant, NotFromRequestData,
        TestingFeature,
    };
    pub use tenantry_runtime::extract::{RoleRequirement, TakenByRequiresRole};
    pub use tenantry_runtime::identity::{Role, TenantRoleRequirement};
    pub use tenantry_runtime::jobs::JobsOnly;
    pub use tenantry_runtime::scope::{
        Assignable, CheckedChanges, Columns, ConflictTarget, Declared, Excluded, FilterValue,
        FragmentPlace, FromOnly, GlobalTable, InsertMany, InsertOne, IsGlobal, IsTenant, JoinScope,
        LeadsWithTheTenantColumn, NamesItsTarget, NoColumn, NoWidening, NotTheTenantColumn,
        OnConflictAction, OneColumn, OnlyGlobalTables, ReadWithoutScope, ReadsOnlyGlobalTables,
        Returning, RunFuture, RunTenantQuery, RuntimeSqlFragment, Scoped, ScopedDoUpdate,
        ScopedExpr, ScopedFrom, ScopedIn, ScopedInsert, ScopedJoin, ScopedOn, ScopedOnConflict,
        ScopedSource, ScopedSubquery, ScopedWhere, Set, SetColumn, SqlFragment, TableKind,
        TargetColumn, TenantJoinOn, TenantQuery, TenantRow, TenantTable, UpdateValue, Upsert,
        UpsertUpdate, UuidNotNull,
    };
}

/// Request identity: the axum extractors that `#[requires_role(..)]` takes ([`InTenant`](identity::InTenant),
/// [`AsOwner`](identity::AsOwner)) and [`CurrentUser`](identity::CurrentUser), the state they read
/// ([`Tenantry`](identity::Tenantry)), principals, roles and their proofs, tenant selection and
/// the CSRF policy. How a request is authenticated is [`auth`]'s.
///
/// | role | from | inside a tenant | across tenants |
/// |---|---|---|---|
/// | `Owner` | `users.is_owner` | read and write in any tenant | audited bypass (`no_tenant_scope!`) |
/// | `Partner` | membership `partner` | read and write in its tenants | no |
/// | `ClientViewer` | membership `client_viewer` | read only (`READ ONLY` transactions) | no |
pub mod identity {
    pub use tenantry_runtime::extract::{
        load_principal, request_id, select_tenant, tenant_header, ActiveTenant, AsOwner,
        CurrentUser, InTenant, Tenantry, TENANT_HEADER,
    };
    pub use tenantry_runtime::identity::{
        csrf, ClientViewer, CsrfPolicy, Membership, Owner, OwnerProof, Partner, Principal,
        PrincipalCacheStatus, Proof, TenantRole,
    };
}

pub use tenantry_runtime::identity::auth;

/// Migrating a database: tenantry's own migrations, then the application's, under one advisory
/// lock; the roles they create and grant, under names a deployment may choose.
pub mod migrations {
    pub use tenantry_runtime::schema::{
        migrate_roles, migrate_url, migrate_with_roles, render_sql, Migrated, RenderedMigrations,
        RoleNameError, RoleNames, FRAMEWORK_MIGRATIONS,
    };
}

/// Inspecting a database for tenant-isolation gaps: what `tenantry doctor` reports.
pub mod doctor {
    pub use tenantry_runtime::schema::{
        inspect, inspect_roles, Finding, PolicyDifference, Report, RoleEscalation, RolePower,
        SearchPathProblem,
    };
}

pub use tenantry_runtime::schema::{audit_chain, tables as schema};

/// Connection poolers between tenantry and PostgreSQL (PgBouncer in transaction mode):
/// [`Pooler`](pooler::Pooler), the setting that says whether one is in the way, and
/// [`require_session`](pooler::require_session), the check at start for a URL that needs a
/// session of its own.
pub mod pooler {
    pub use tenantry_runtime::db::require_session;
    pub use tenantry_runtime::pool::Pooler;
}

pub use tenantry_runtime::pool::tls;

/// One tenant cannot starve the others, and every tenant's load is visible: fair shares of the
/// tenant pool ([`FairShare`](fairness::FairShare), [`TenantWeights`](fairness::TenantWeights)),
/// a per-tenant cap on concurrent requests (`serve`), and per-tenant metrics
/// ([`Db::tenant_load`], [`metrics_router`](fairness::metrics_router)).
pub mod fairness {
    pub use tenantry_runtime::extract::metrics_router;
    pub use tenantry_runtime::fairness::{
        FairShare, LoadSnapshot, TenantLoad, TenantWeights, CONTENT_TYPE, DEFAULT_QUEUE,
    };
}

pub use tenantry_runtime::settings;

/// The durable per-tenant job queue: `conn.enqueue(..)` in a tenant transaction, and
/// [`Jobs::queue`] in the task that owns `Jobs` (the README's "A job queue").
pub use tenantry_runtime::queue;

#[cfg(feature = "serve")]
pub use tenantry_runtime::serve;

#[cfg(feature = "citus")]
pub use tenantry_runtime::citus;

#[cfg(feature = "log-limit")]
pub use tenantry_runtime::log_limit;

/// The test kit (feature `testing`, for `[dev-dependencies]` only): see
/// [`tenantry_runtime::testing`]. Named here, under the feature, so that `use tenantry::testing::..`
/// in a build without it gets rustc's note "the item is gated behind the `testing` feature"
/// rather than a bare "could not find `testing`".
#[cfg(feature = "testing")]
pub use tenantry_runtime::testing;

/// Used by generated code, not public API: anything here may change in any release.
#[doc(hidden)]
pub use tenantry_runtime::__private;

/// Declares a Diesel model's table as a tenant table.
///
/// ```text
/// #[tenant_table(generated(id, created_at))]      // table from #[diesel(table_name = ..)]
/// #[tenant_table(table = schema::invoices, column = tenant_id, new = NewInvoice)]
/// ```
///
/// Generates, for model `Invoice` on table `invoices`:
/// - `Invoice::scoped(conn)`: the only way to query the table inside a tenant transaction,
///   `WHERE tenant_id = $tenant`;
/// - `NewInvoice`: the model's fields minus the tenant column and the `generated(..)` ones, and
///   `Invoice::insert(conn, new)` / `Invoice::insert_many(conn, rows)`, which take `tenant_id`
///   from the transaction (in a read-write transaction only);
/// - the table's [`Declared`](bounds::Declared) declaration (kind [`IsTenant`](bounds::IsTenant)), used by joins,
///   [`declare_tables`] and `doctor`.
///
/// The schema (`table!`, as `diesel print-schema` writes it, with its `joinable!` and
/// `allow_tables_to_appear_in_same_query!`) stays the source of truth for columns and joins,
/// and the declaration is checked against it at compile time: the tenant column must be
/// `uuid NOT NULL` (`-> Uuid`), and `column = ..` cannot name another column of a table that has
/// a `tenant_id` column.
pub use tenantry_macros::tenant_table;

/// Declares a Diesel model's table as global (shared by all tenants, read without a scope).
///
/// Checked against the schema at compile time: a table whose `table!` has a `tenant_id` column
/// cannot be declared global, whatever the model's fields are. At run time `declare_tables`
/// (and the SQL `tenantry_declare_global_table`) also refuse a table with a foreign key to
/// `tenants`, whatever the column is called.
pub use tenantry_macros::global_table;

/// Opens an [`AuditedBypass`] whose reason is a string literal checked at compile time:
/// `no_tenant_scope!(&owner_or_job, "why isolation is lifted")`.
///
/// The actor is an Owner's proof (`#[requires_role(Owner)]`) or a system job of the [`Jobs`]
/// capability made in `main`; nothing else implements the sealed [`BypassActor`](bounds::BypassActor).
///
/// ```compile_fail
/// # fn f(jobs: &tenantry::Jobs) {
/// let job = jobs.job("x");
/// let bypass = tenantry::no_tenant_scope!(&job, "");   // error: a bypass needs a non-empty reason
/// # }
/// ```
pub use tenantry_macros::no_tenant_scope;

/// A SQL fragment whose text is one string literal: `tenantry::sql!("amount_cents % 2 = 0")`
/// (SQL type `Bool`, for a filter) or `tenantry::sql!(Text, "lower(name)")` (any Diesel SQL
/// type in scope, e.g. `diesel::sql_types::Text`).
///
/// It stands where Diesel's `diesel::dsl::sql` would, in a scoped query's filter, selection and
/// order and in an update's value, and combines with Diesel's operators, which bind values:
///
/// ```text
/// Invoice::scoped(conn).filter(tenantry::sql!(Text, "lower(status)").eq(status)).load(conn)
/// ```
///
/// Its text is fixed at compile time, so no request data can rewrite it; a tenant connection
/// refuses SQL text built at run time (`diesel::dsl::sql(&format!(..))`,
/// [`RuntimeSqlFragment`](bounds::RuntimeSqlFragment)). The text is still yours: tenantry does not parse it, and row-level
/// security applies to it as to any statement. Each call site gets a type of its own, so two
/// fragments never share a cached prepared statement.
///
/// Anything but one string literal is a compile error naming it:
///
/// ```compile_fail
/// # fn f(name: &str) {
/// let fragment = tenantry::sql!(format!("name = '{name}'")); // error: a `format!` string
/// # }
/// ```
pub use tenantry_macros::sql;

/// Requires a role of an axum handler: `#[requires_role(Partner)]`, `#[requires_role(ClientViewer)]`
/// or `#[requires_role(Owner)]`.
///
/// The handler's first extractor becomes tenantry's role extractor (`identity::InTenant<Role>`, or
/// `identity::AsOwner`, through a hidden wrapper), which authenticates the request, selects the
/// tenant (`X-Tenant`) and refuses a principal without the role with 403 before the body runs, in
/// every build profile. Parameters tenantry fills, recognised by these names (an alias or a
/// renamed import is a compile error naming itself): `ctx: TenantCtx` (read-only for
/// `ClientViewer`: writes do not compile), `proof: Proof<Role>` / `owner: OwnerProof` (only an
/// Owner proof can open `no_tenant_scope!`), `principal: Principal`. The extractor is a local of
/// the handler, `request_ends_with_handler_queue_later_work_as_a_job`; the context and the proof borrow it, so they cannot outlive
/// the handler (a borrow error names `request_ends_with_handler_queue_later_work_as_a_job`), and what they grant ends when the
/// handler returns or is dropped (used later, it is refused at run time with
/// `DbError::RequestEnded`). Other parameters stay ordinary axum extractors.
pub use tenantry_macros::requires_role;

/// tenantry's `#[derive(AsChangeset)]` (in [`prelude`]): Diesel's derive for a struct of changes
/// to one table (`#[diesel(table_name = ..)]`, `#[diesel(column_name = ..)]`; `Option` fields are
/// skipped when `None`; the primary key, `id` unless `#[diesel(primary_key(..))]`, is left out),
/// built from [`SetColumn::to`](bounds::SetColumn::to) assignments so that tenantry sees the columns: a scoped update
/// takes it, and a field mapping to a tenant table's tenant column does not compile.
pub use tenantry_macros::AsChangeset;

/// An async test on a fresh, migrated PostgreSQL database (feature `testing`), in the spirit of
/// `#[sqlx::test]`:
///
/// ```no_run
/// use tenantry::prelude::*;
/// use tenantry::testing::TestDb;
/// # mod app { pub const MIGRATIONS: tenantry::testing::NoMigrations = tenantry::testing::NoMigrations; }
///
/// #[tenantry::test(migrations = app::MIGRATIONS)]
/// async fn a_partner_acts_in_its_own_tenant(t: TestDb) {
///     let acme = t.acme.as_partner();
///     let tenant = t.db.tx(&acme, async |conn| Ok::<_, tenantry::DbError>(conn.tenant_id()));
///     assert_eq!(tenant.await.unwrap(), t.acme.id);
/// }
/// ```
///
/// The test gets a `tenantry::testing::TestDb`: a scratch database on `TENANTRY_TEST_DATABASE_URL`
/// (default `postgres://postgres@127.0.0.1:5432/postgres`, a superuser that may create
/// databases) with tenantry's migrations and then `migrations` (any Diesel `MigrationSource`,
/// usually your `diesel_migrations::embed_migrations!("migrations")`; omit it to get tenantry's
/// tables alone), a [`Db`] on the app and bypass roles, the [`Jobs`] capability, the tenants
/// `acme` and `globex` with a partner and a viewer each, and an Owner. It runs on a
/// current-thread Tokio runtime. The database is dropped when the test ends, also when it
/// panics; an unreachable server fails the test with one message naming
/// `TENANTRY_TEST_DATABASE_URL`. Other attributes (`#[should_panic]`) and a `Result` return
/// type work as with `#[test]`.
pub use tenantry_macros::test;

/// The names a module that uses tenantry needs: `use tenantry::prelude::*;`.
///
/// Everything of `tenantry_runtime::prelude` (Diesel's query-building traits, tenantry's run
/// methods, `column.to(value)`, the main types), with tenantry's `AsChangeset` derive in place of
/// Diesel's. Do not also import `diesel::prelude::*` or `diesel_async::RunQueryDsl` in the same
/// module: their `load`/`execute` would be ambiguous.
pub mod prelude {
    pub use tenantry_macros::AsChangeset;
    pub use tenantry_runtime::prelude::*;
}

#[cfg(test)]
mod public_api;
