//! Generated isolation tests per model: [`assert_isolated!`](crate::assert_isolated) inserts
//! rows in two tenants and checks that every scoped form from one tenant never sees or touches
//! the other's, that the app role sees nothing without a tenant, and that row-level security is
//! enabled and forced.
//!
//! The macro writes the scoped queries with the model's own types (they must compile like the
//! application's); the functions here hold what needs no types: the rows as the database really
//! has them, read as the superuser, and the table's row-level security.

use std::collections::BTreeSet;

use diesel::sql_types::{Bool, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::harness::{TestDb, TestTenant};
use crate::ctx::conn::TenantConn;
use crate::error::DbError;
use crate::scope::table::{Declared, TableDecl};

/// What the database holds for one model after the rows were built: its declaration and, per
/// tenant, the keys of its rows (as text), read as the superuser.
#[doc(hidden)]
#[derive(Debug)]
pub struct Fixture {
    /// The model's table as declared.
    pub decl: TableDecl,
    /// The key column's SQL name.
    pub key: &'static str,
    /// The model's name, for messages.
    pub model: &'static str,
    /// `acme`'s keys, then `globex`'s.
    pub keys: [BTreeSet<String>; 2],
}

/// The declaration of the table `column` belongs to.
#[doc(hidden)]
pub fn decl_of<C>(_column: &C) -> (TableDecl, &'static str)
where
    C: diesel::Column,
    C::Table: Declared,
{
    (<C::Table as Declared>::DECL, C::NAME)
}

#[derive(diesel::QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    key: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Security {
    #[diesel(sql_type = Bool)]
    enabled: bool,
    #[diesel(sql_type = Bool)]
    forced: bool,
    #[diesel(sql_type = Bool)]
    policy: bool,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Fixture {
    /// Builds rows in both tenants, each in a tenant transaction as the tenant's partner, and
    /// reads what the database holds.
    pub async fn prepare<F>(
        t: &TestDb,
        model: &'static str,
        (decl, key): (TableDecl, &'static str),
        rows: F,
    ) -> Self
    where
        F: AsyncFn(&mut TenantConn<'_>) -> Result<(), DbError>,
    {
        assert!(
            decl.tenant_column().is_some(),
            "assert_isolated!: {model}'s table `{}` is not a tenant table",
            decl.table()
        );
        for tenant in [&t.acme, &t.globex] {
            t.db.tx(&tenant.as_partner(), async |conn| rows(conn).await)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "assert_isolated!: building {model} rows in {}: {e}",
                        tenant.slug
                    )
                });
        }
        let mut fixture = Fixture {
            decl,
            key,
            model,
            keys: [BTreeSet::new(), BTreeSet::new()],
        };
        fixture.keys = [
            fixture.truth(t, &t.acme).await,
            fixture.truth(t, &t.globex).await,
        ];
        for (i, tenant) in [&t.acme, &t.globex].into_iter().enumerate() {
            assert!(
                !fixture.keys[i].is_empty(),
                "assert_isolated!: the rows closure made no `{}` row in {}: insert at least one \
                 row of {model} in the transaction it is given",
                decl.table(),
                tenant.slug
            );
        }
        fixture
    }

    /// The keys of `tenant`'s rows, as the superuser reads them (row-level security does not
    /// apply to it).
    #[allow(
        clippy::disallowed_methods,
        reason = "the test kit reads each table's keys as the superuser, with SQL built from catalog names it quotes"
    )]
    pub async fn truth(&self, t: &TestDb, tenant: &TestTenant) -> BTreeSet<String> {
        let sql = format!(
            "SELECT {}::text AS key FROM {} WHERE {} = $1",
            quote_ident(self.key),
            quote_ident(self.decl.table()),
            quote_ident(self.decl.tenant_column().unwrap_or("tenant_id")),
        );
        let rows: Vec<KeyRow> = diesel::sql_query(&sql)
            .bind::<SqlUuid, _>(tenant.id)
            .load(&mut t.admin().await)
            .await
            .unwrap_or_else(|e| panic!("assert_isolated!: {sql}: {e}"));
        rows.into_iter().map(|r| r.key).collect()
    }

    /// The index of `tenant` in [`Fixture::keys`].
    pub fn index(&self, t: &TestDb, tenant: &TestTenant) -> usize {
        usize::from(tenant.id != t.acme.id)
    }

    /// Asserts that `seen` (keys a scoped form returned in `tenant`) are exactly its own rows.
    #[track_caller]
    pub fn assert_own(&self, t: &TestDb, tenant: &TestTenant, form: &str, seen: &[String]) {
        let own = &self.keys[self.index(t, tenant)];
        let other = &self.keys[1 - self.index(t, tenant)];
        let seen: BTreeSet<String> = seen.iter().cloned().collect();
        let leaked: Vec<&String> = seen.intersection(other).collect();
        assert!(
            leaked.is_empty(),
            "{}: `{form}` in {} returned the other tenant's rows {leaked:?}",
            self.model,
            tenant.slug
        );
        assert_eq!(
            &seen, own,
            "{}: `{form}` in {} should return exactly its own rows",
            self.model, tenant.slug
        );
    }

    /// Asserts that a scoped write in `tenant` touched `touched` rows, `expected` of its own.
    #[track_caller]
    pub fn assert_touched(&self, tenant: &TestTenant, form: &str, touched: usize, expected: usize) {
        assert_eq!(
            touched, expected,
            "{}: `{form}` in {} touched {touched} rows, expected {expected} (its own)",
            self.model, tenant.slug
        );
    }

    /// Asserts that both tenants still hold exactly the rows they were built with.
    pub async fn assert_untouched(&self, t: &TestDb, after: &str) {
        for (i, tenant) in [&t.acme, &t.globex].into_iter().enumerate() {
            assert_eq!(
                self.truth(t, tenant).await,
                self.keys[i],
                "{}: {}'s rows changed after {after}",
                self.model,
                tenant.slug
            );
        }
    }

    /// The table's row-level security is enabled and forced with tenantry's policy, and the app
    /// role outside a tenant transaction sees none of its rows.
    #[allow(
        clippy::disallowed_methods,
        reason = "the test kit probes the catalog and the app role with its own literal SQL"
    )]
    pub async fn assert_locked_down(&self, t: &TestDb) {
        let table = self.decl.table();
        let security: Security = diesel::sql_query(
            "SELECT c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
                    EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                            AND p.polname = 'tenantry_tenant_isolation') AS policy
             FROM pg_class c WHERE c.oid = to_regclass($1)",
        )
        .bind::<Text, _>(quote_ident(table))
        .get_result(&mut t.admin().await)
        .await
        .unwrap_or_else(|e| panic!("assert_isolated!: reading {table}'s security: {e}"));
        assert!(
            security.enabled,
            "{}: row-level security is not enabled on `{table}`",
            self.model
        );
        assert!(
            security.forced,
            "{}: row-level security is not forced on `{table}` (its owner would see every row)",
            self.model
        );
        assert!(
            security.policy,
            "{}: `{table}` lacks the policy tenantry_tenant_isolation: declare it \
             (`SELECT {schema}.tenantry_declare_tenant_table('{table}')` in a migration)",
            self.model,
            schema = crate::schema::tables::NAME,
        );
        let sql = format!("SELECT count(*) AS n FROM {}", quote_ident(table));
        let seen = diesel::sql_query(&sql)
            .get_result::<Count>(&mut t.app_conn().await)
            .await
            .unwrap_or_else(|e| panic!("assert_isolated!: {sql} as tenantry_app: {e}"))
            .n;
        assert_eq!(
            seen, 0,
            "{}: the app role sees {seen} rows of `{table}` with no tenant set",
            self.model
        );
    }
}

/// The tenant ids of a join's rows must all be `tenant`'s (the joined side may be missing in a
/// left join).
#[doc(hidden)]
#[track_caller]
pub fn assert_join(
    model: &str,
    form: &str,
    tenant: &TestTenant,
    own: usize,
    rows: &[(Uuid, Option<Uuid>)],
    left: bool,
) {
    for (lhs, rhs) in rows {
        assert_eq!(
            *lhs, tenant.id,
            "{model}: `{form}` in {} returned a row of tenant {lhs}",
            tenant.slug
        );
        assert!(
            rhs.is_none_or(|r| r == tenant.id),
            "{model}: `{form}` in {} joined a row of tenant {rhs:?}",
            tenant.slug
        );
    }
    if left {
        assert!(
            rows.len() >= own,
            "{model}: `{form}` in {} lost rows of its own: {} of {own}",
            tenant.slug,
            rows.len()
        );
    } else {
        assert!(
            !rows.is_empty(),
            "{model}: `{form}` in {} found nothing to join: make the rows closure insert the \
             joined rows too",
            tenant.slug
        );
    }
}

/// Checks that a tenant model is isolated: builds rows in `acme` and `globex` with `rows` (an
/// async closure given a tenant transaction's connection, which inserts at least one row of the
/// model and whatever it needs), then, from each tenant, checks every scoped form against what
/// the database holds:
///
/// - load (`Model::scoped(conn)` with the model's `Selectable` columns, and the keys alone),
///   count, and find by key (its own row found, each of the other tenant's rows not);
/// - update and delete by the other tenant's keys touch nothing, and over the whole scope touch
///   exactly its own rows (the whole-scope delete is rolled back);
/// - for each `joins` table (`joinable!` to the model's table): `inner_join` and `left_join`
///   return only the tenant's rows on both sides;
/// - with no tenant set, the app role sees zero rows; row-level security is enabled and forced
///   with tenantry's policy.
///
/// Use it inside a `#[tenantry::test]` (the example runs it for each of its tables):
///
/// ```text
/// #[tenantry::test(migrations = MIGRATIONS)]
/// async fn invoices_are_isolated(t: TestDb) {
///     tenantry::testing::assert_isolated!(t, Invoice, key: invoices::id => Uuid,
///         joins: [projects::table], rows: async |conn| seed_invoice(conn).await);
/// }
/// ```
///
/// `key` is a unique column of the table (usually its primary key) with its Rust type, whose
/// text form (`::text` in SQL) matches the type's `to_string()` (as for `Uuid`, integers and
/// strings). A failure names the model, the form and the tenant.
#[macro_export]
macro_rules! assert_isolated {
    ($t:expr, $model:ty, key: $key:path => $key_ty:ty,
     $(joins: [$($join:ty),* $(,)?],)? rows: $rows:expr $(,)?) => {{
        use $crate::prelude::*;
        use $crate::__private::isolation as __iso;
        type __Table = <$key as $crate::__private::diesel::Column>::Table;
        type __TenantCol = <__Table as $crate::scope::TenantTable>::TenantColumn;
        let t: &$crate::testing::TestDb = &$t;
        let model = ::core::stringify!($model);
        let fx = __iso::Fixture::prepare(t, model, __iso::decl_of(&$key), $rows).await;
        let ids = |keys: &::std::collections::BTreeSet<::std::string::String>| -> ::std::vec::Vec<$key_ty> {
            keys.iter()
                .map(|k| k.parse::<$key_ty>().unwrap_or_else(|_| ::core::panic!(
                    "assert_isolated!: the key {k:?} does not parse as {}", ::core::stringify!($key_ty))))
                .collect()
        };
        for (me, other) in [(&t.acme, &t.globex), (&t.globex, &t.acme)] {
            let own = ids(&fx.keys[fx.index(t, me)]);
            let theirs = ids(&fx.keys[fx.index(t, other)]);
            let ctx = me.as_partner();
            let (loaded, keys, count, found, not_found) = t.db.tx(&ctx, async |conn| {
                let loaded: ::std::vec::Vec<$model> = <$model>::scoped(conn)
                    .select(<$model as SelectableHelper<$crate::__private::diesel::pg::Pg>>::as_select())
                    .load(conn).await?;
                let keys: ::std::vec::Vec<$key_ty> = <$model>::scoped(conn).select($key).load(conn).await?;
                let count: i64 = <$model>::scoped(conn).count().get_result(conn).await?;
                let found: ::std::vec::Vec<$key_ty> = <$model>::scoped(conn)
                    .filter($key.eq(own[0].clone())).select($key).load(conn).await?;
                let mut not_found: ::std::vec::Vec<$key_ty> = ::std::vec::Vec::new();
                for id in &theirs {
                    not_found.extend(<$model>::scoped(conn)
                        .filter($key.eq(id.clone())).select($key).load::<$key_ty>(conn).await?);
                }
                ::core::result::Result::Ok::<_, $crate::error::DbError>((loaded.len(), keys, count, found, not_found))
            }).await.unwrap_or_else(|e| ::core::panic!("{model}: the scoped reads in {} failed: {e}", me.slug));
            let text = |v: &[$key_ty]| v.iter().map(|k| k.to_string()).collect::<::std::vec::Vec<_>>();
            fx.assert_touched(me, "Model::scoped(conn).load(conn)", loaded, own.len());
            fx.assert_own(t, me, "Model::scoped(conn).select(key).load(conn)", &text(&keys));
            fx.assert_touched(me, "Model::scoped(conn).count()", count as usize, own.len());
            ::core::assert_eq!(text(&found), text(&own[..1]),
                "{model}: `filter(key.eq(..))` in {} should find its own row", me.slug);
            ::core::assert!(not_found.is_empty(),
                "{model}: `filter(key.eq(..))` in {} found the other tenant's rows {:?}", me.slug, text(&not_found));

            let (updated, deleted, updated_all) = t.db.tx(&ctx, async |conn| {
                let mut updated = 0;
                let mut deleted = 0;
                for id in &theirs {
                    updated += $crate::__private::diesel::update(<$model>::scoped(conn).filter($key.eq(id.clone())))
                        .set($crate::scope::SetColumn::to($key, $key)).execute(conn).await?;
                    deleted += $crate::__private::diesel::delete(<$model>::scoped(conn).filter($key.eq(id.clone())))
                        .execute(conn).await?;
                }
                let updated_all = $crate::__private::diesel::update(<$model>::scoped(conn))
                    .set($crate::scope::SetColumn::to($key, $key)).execute(conn).await?;
                ::core::result::Result::Ok::<_, $crate::error::DbError>((updated, deleted, updated_all))
            }).await.unwrap_or_else(|e| ::core::panic!("{model}: the scoped writes in {} failed: {e}", me.slug));
            fx.assert_touched(me, "diesel::update(Model::scoped(conn).filter(key.eq(other's)))", updated, 0);
            fx.assert_touched(me, "diesel::delete(Model::scoped(conn).filter(key.eq(other's)))", deleted, 0);
            fx.assert_touched(me, "diesel::update(Model::scoped(conn))", updated_all, own.len());
            // Delete the whole scope, count, and roll back: the rows stay for the next checks.
            let mut deleted_all = 0;
            let rolled_back = t.db.tx(&ctx, async |conn| {
                deleted_all = $crate::__private::diesel::delete(<$model>::scoped(conn)).execute(conn).await?;
                ::core::result::Result::Err::<(), _>($crate::error::DbError::Config("rolled back on purpose".into()))
            }).await;
            ::core::assert!(::core::matches!(rolled_back, ::core::result::Result::Err($crate::error::DbError::Config(_))),
                "{model}: `diesel::delete(Model::scoped(conn))` in {} failed: {rolled_back:?} (are the rows \
                 referenced by others the closure made? build rows nothing references)", me.slug);
            fx.assert_touched(me, "diesel::delete(Model::scoped(conn))", deleted_all, own.len());
            fx.assert_untouched(t, "the scoped writes").await;

            $($({
                let form = ::core::concat!("Model::scoped(conn).inner_join(", ::core::stringify!($join), ")");
                let lform = ::core::concat!("Model::scoped(conn).left_join(", ::core::stringify!($join), ")");
                type __JoinCol = <$join as $crate::scope::TenantTable>::TenantColumn;
                let (inner, left) = t.db.tx(&ctx, async |conn| {
                    let inner: ::std::vec::Vec<($crate::__private::Uuid, $crate::__private::Uuid)> = <$model>::scoped(conn)
                        .inner_join(<$join as ::core::default::Default>::default())
                        .select((<__TenantCol as ::core::default::Default>::default(), <__JoinCol as ::core::default::Default>::default()))
                        .load(conn).await?;
                    let left: ::std::vec::Vec<($crate::__private::Uuid, ::core::option::Option<$crate::__private::Uuid>)> = <$model>::scoped(conn)
                        .left_join(<$join as ::core::default::Default>::default())
                        .select((<__TenantCol as ::core::default::Default>::default(), <__JoinCol as ::core::default::Default>::default().nullable()))
                        .load(conn).await?;
                    ::core::result::Result::Ok::<_, $crate::error::DbError>((inner, left))
                }).await.unwrap_or_else(|e| ::core::panic!("{model}: `{form}` in {} failed: {e}", me.slug));
                let inner: ::std::vec::Vec<_> = inner.into_iter().map(|(a, b)| (a, ::core::option::Option::Some(b))).collect();
                __iso::assert_join(model, form, me, own.len(), &inner, false);
                __iso::assert_join(model, lform, me, own.len(), &left, true);
            })*)?
        }
        fx.assert_untouched(t, "every check").await;
        fx.assert_locked_down(t).await;
    }};
}
