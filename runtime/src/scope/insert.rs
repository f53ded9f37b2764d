//! Inserts whose `tenant_id` comes from the transaction, never from the caller's struct.

use std::marker::PhantomData;

use diesel::dsl::{Eq, Values};
use diesel::expression::AsExpression;
use diesel::query_builder::IncompleteInsertStatement;
use diesel::query_source::Column;
use diesel::sql_types::SqlType;
use diesel::{ExpressionMethods, Insertable};
use uuid::Uuid;

use crate::ctx::conn::{Brand, TenantConn};
use crate::ctx::CanWrite;

/// An insert into a tenant table whose rows carry the transaction's `tenant_id`.
///
/// Built by `<Model>::insert(conn, new)` / `<Model>::insert_many(conn, rows)` in a read-write
/// transaction; run it with `.execute(conn)` or `.get_result::<Model>(conn)` (which returns the
/// inserted row).
#[derive(Debug)]
#[must_use = "inserts do nothing until run on a tenant connection: `.execute(conn).await`"]
pub struct ScopedInsert<'tx, S> {
    statement: S,
    _brand: Brand<'tx>,
}

impl<'tx, S> ScopedInsert<'tx, S> {
    pub(crate) fn new(statement: S) -> Self {
        Self {
            statement,
            _brand: PhantomData,
        }
    }

    pub(crate) fn into_statement(self) -> S {
        self.statement
    }
}

/// One row of a scoped insert into a table whose tenant column is `C`:
/// `(C = $tenant, <new row without the tenant column>)`.
pub type TenantRow<C, N> = (Eq<C, Uuid>, N);

/// The statement of a single-row scoped insert into `T` (tenant column `C`).
pub type InsertOne<T, C, N> = Values<IncompleteInsertStatement<T>, TenantRow<C, N>>;
/// The statement of a multi-row scoped insert into `T` (tenant column `C`).
pub type InsertMany<T, C, N> = Values<IncompleteInsertStatement<T>, Vec<TenantRow<C, N>>>;

/// `INSERT INTO t (tenant_id, ..) VALUES ($tenant, ..)` (what `<Model>::insert` calls).
pub fn insert<'tx, T, C, N, A>(
    conn: &TenantConn<'tx, A>,
    new: N,
) -> ScopedInsert<'tx, InsertOne<T, C, N>>
where
    T: diesel::Table + Default,
    C: Column + Default,
    C::SqlType: SqlType + diesel::sql_types::SingleValue,
    Uuid: AsExpression<C::SqlType>,
    A: CanWrite,
    TenantRow<C, N>: Insertable<T>,
{
    let row = (C::default().eq(conn.tenant_id()), new);
    ScopedInsert::new(diesel::insert_into(T::default()).values(row))
}

/// Multi-row insert, every row with the transaction's `tenant_id` (what `<Model>::insert_many`
/// calls).
pub fn insert_many<'tx, T, C, N, A>(
    conn: &TenantConn<'tx, A>,
    rows: impl IntoIterator<Item = N>,
) -> ScopedInsert<'tx, InsertMany<T, C, N>>
where
    T: diesel::Table + Default,
    C: Column + Default,
    C::SqlType: SqlType + diesel::sql_types::SingleValue,
    Uuid: AsExpression<C::SqlType>,
    A: CanWrite,
    Vec<TenantRow<C, N>>: Insertable<T>,
{
    let tenant = conn.tenant_id();
    let rows: Vec<_> = rows
        .into_iter()
        .map(|n| (C::default().eq(tenant), n))
        .collect();
    ScopedInsert::new(diesel::insert_into(T::default()).values(rows))
}
