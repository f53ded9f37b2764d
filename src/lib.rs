#![doc = include_str!("../docs/crate.md")]

pub use tenantry_runtime::*;

/// Declares a Diesel model's table as a tenant table.
///
/// ```text
/// #[tenant_table(generated(id, created_at))]      // table from #[diesel(table_name = ..)]
/// #[tenant_table(table = schema::invoices, column = tenant_id, new = NewInvoice)]
/// ```
///
/// Generates, for model `Invoice` on table `invoices`:
/// - `Invoice::scoped(&ctx)`: the only way to query the table, `WHERE tenant_id = $ctx`;
/// - `NewInvoice`: the model's fields minus `tenant_id` and the `generated(..)` ones, and
///   `Invoice::insert(&ctx, new)` / `Invoice::insert_many(&ctx, rows)`, which take `tenant_id`
///   from the context;
/// - the table's [`TenantTable`] declaration, used by joins, [`declare_tables`] and `doctor`.
///
/// The schema (`table!`, as `diesel print-schema` writes it, with its `joinable!` and
/// `allow_tables_to_appear_in_same_query!`) stays the source of truth for columns and joins.
pub use tenantry_macros::tenant_table;

/// Declares a Diesel model's table as global (shared by all tenants, read without a scope).
///
/// A model with a `tenant_id` field cannot be declared global.
pub use tenantry_macros::global_table;

/// Opens an [`AuditedBypass`] whose reason is a string literal checked at compile time:
/// `no_tenant_scope!(&owner_or_job, "why isolation is lifted")`.
///
/// ```compile_fail
/// # let job = tenantry::SystemJob::named("x");
/// let bypass = tenantry::no_tenant_scope!(&job, "");   // error: a bypass needs a non-empty reason
/// ```
pub use tenantry_macros::no_tenant_scope;

/// Requires a role of an axum handler: `#[requires_role(Partner)]`, `#[requires_role(ClientViewer)]`
/// or `#[requires_role(Owner)]`.
///
/// The handler's first extractor becomes `identity::InTenant<Role>` (or `identity::AsOwner`), which
/// authenticates the request, selects the tenant (`X-Tenant`) and refuses a principal without the
/// role with 403 before the body runs, in every build profile. Parameters tenantry fills:
/// `ctx: TenantCtx` (read-only for `ClientViewer`: writes do not compile), `proof: Proof<Role>` /
/// `owner: OwnerProof` (only an Owner proof can open `no_tenant_scope!`), `principal: Principal`.
/// Other parameters stay ordinary axum extractors.
pub use tenantry_macros::requires_role;
