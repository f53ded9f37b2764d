//! Inserts whose `tenant_id` comes from the context, never from the caller's struct.

use diesel::dsl::{Eq, Values};
use diesel::query_builder::IncompleteInsertStatement;
use diesel::{ExpressionMethods, Insertable};
use uuid::Uuid;

use crate::ctx::{Access, TenantCtx};
use crate::table::TenantTable;

/// An insert into a tenant table whose rows carry the context's `tenant_id`.
///
/// Built by `<Model>::insert(&ctx, new)` / `<Model>::insert_many(&ctx, rows)`; run it with
/// `.execute(conn)` or `.get_result::<Model>(conn)` (which returns the inserted row).
#[derive(Debug)]
#[must_use = "inserts do nothing until run on a tenant connection: `.execute(conn).await`"]
pub struct ScopedInsert<S>(S);

impl<S> ScopedInsert<S> {
    pub(crate) fn into_statement(self) -> S {
        self.0
    }
}

/// One row of a scoped insert: `(tenant_id = $ctx, <new row without tenant_id>)`.
pub type TenantRow<T, N> = (Eq<<T as TenantTable>::TenantColumn, Uuid>, N);

/// The statement of a single-row scoped insert into `T`.
pub type InsertOne<T, N> = Values<IncompleteInsertStatement<T>, TenantRow<T, N>>;
/// The statement of a multi-row scoped insert into `T`.
pub type InsertMany<T, N> = Values<IncompleteInsertStatement<T>, Vec<TenantRow<T, N>>>;

/// `INSERT INTO t (tenant_id, ..) VALUES ($ctx, ..)` (what `<Model>::insert` calls).
pub fn insert<T, N, A>(ctx: &TenantCtx<A>, new: N) -> ScopedInsert<InsertOne<T, N>>
where
    T: TenantTable,
    A: Access,
    TenantRow<T, N>: Insertable<T>,
{
    let row = (T::TenantColumn::default().eq(ctx.tenant_id()), new);
    ScopedInsert(diesel::insert_into(T::default()).values(row))
}

/// Multi-row insert, every row with the context's `tenant_id` (what `<Model>::insert_many` calls).
pub fn insert_many<T, N, A>(
    ctx: &TenantCtx<A>,
    rows: impl IntoIterator<Item = N>,
) -> ScopedInsert<InsertMany<T, N>>
where
    T: TenantTable,
    A: Access,
    Vec<TenantRow<T, N>>: Insertable<T>,
{
    let tenant = ctx.tenant_id();
    let rows: Vec<_> = rows
        .into_iter()
        .map(|n| (T::TenantColumn::default().eq(tenant), n))
        .collect();
    ScopedInsert(diesel::insert_into(T::default()).values(rows))
}
