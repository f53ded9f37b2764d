//! Checks made against a table's Diesel schema (`table!`, `joinable!`), not a model's fields: the
//! names of its columns and its SQL name (evaluated at compile time by the code `#[tenant_table]`
//! / `#[global_table]` generate), the tenant column's SQL type, whether a column is the tenant
//! column, and whether `joinable!` ties a table to `tenants`.

use std::marker::PhantomData;

use diesel::expression::is_contained_in_group_by::{No, Yes};
use diesel::expression::IsContainedInGroupBy;
use diesel::internal::table_macro::{Identifier, InfixNode, StaticQueryFragment};
use diesel::query_source::{Column, JoinTo};
use diesel::Table;

/// The SQL names of a tuple of columns (a table's `AllColumns`), as a constant.
#[diagnostic::on_unimplemented(
    message = "tenantry cannot list the columns of this table",
    note = "tenantry checks declarations against tables of up to 64 columns"
)]
pub trait ColumnNames {
    /// The columns' SQL names, in `table!` order.
    const NAMES: &'static [&'static str];
}

macro_rules! column_names {
    ($($c:ident),+) => {
        impl<$($c: Column),+> ColumnNames for ($($c,)+) {
            const NAMES: &'static [&'static str] = &[$($c::NAME),+];
        }
    };
}

macro_rules! all_column_names {
    ($head:ident $(, $tail:ident)*) => { all_column_names!(@ [$head] $($tail),*); };
    (@ [$($done:ident),+] $next:ident $(, $rest:ident)*) => {
        column_names!($($done),+);
        all_column_names!(@ [$($done,)+ $next] $($rest),*);
    };
    (@ [$($done:ident),+]) => { column_names!($($done),+); };
}

all_column_names!(
    C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, C18, C19, C20, C21,
    C22, C23, C24, C25, C26, C27, C28, C29, C30, C31, C32, C33, C34, C35, C36, C37, C38, C39, C40,
    C41, C42, C43, C44, C45, C46, C47, C48, C49, C50, C51, C52, C53, C54, C55, C56, C57, C58, C59,
    C60, C61, C62, C63, C64
);

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether table `T`'s schema has a column named `name` (usable in constants).
pub const fn has_column<T>(name: &str) -> bool
where
    T: Table,
    T::AllColumns: ColumnNames,
{
    let names = <T::AllColumns as ColumnNames>::NAMES;
    let mut i = 0;
    while i < names.len() {
        if same(names[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// The tenant column's SQL type must be `Uuid` (`uuid NOT NULL`).
#[diagnostic::on_unimplemented(
    message = "the tenant column must be `uuid NOT NULL`, but its SQL type is `{Self}`",
    label = "declared in `table!` with another type",
    note = "in `table!` the tenant column reads `tenant_id -> Uuid` (not `Nullable<Uuid>`)"
)]
pub trait UuidNotNull {}
impl UuidNotNull for diesel::sql_types::Uuid {}

/// A column usable as a tenant column (checked by the code `#[tenant_table]` generates).
pub trait TenantKeyColumn: Column {}
impl<C> TenantKeyColumn for C
where
    C: Column,
    C::SqlType: UuidNotNull,
{
}

/// Type-level "and" of Diesel's group-by answers: [`Yes`] only for `Yes` and `Yes`.
pub trait Both<Other> {
    /// `Yes` or `No`.
    type Output;
}
impl Both<Yes> for Yes {
    type Output = Yes;
}
impl Both<No> for Yes {
    type Output = No;
}
impl<O> Both<O> for No {
    type Output = No;
}

/// Two columns of one table are the same column iff each is "contained in a group by" the other
/// (Diesel's `table!` answers `Yes` for the same column and for the single-column primary key,
/// `No` otherwise; asking both ways rules the primary key out).
pub(crate) type SameColumn<A, B> = <<A as IsContainedInGroupBy<B>>::Output as Both<
    <B as IsContainedInGroupBy<A>>::Output,
>>::Output;

/// `No`, the answer for a column that is not the tenant column.
#[diagnostic::on_unimplemented(
    message = "a tenant-scoped write cannot set the tenant column",
    label = "this would move the row to another tenant",
    note = "the tenant column is set once, from the transaction's tenant, when the row is inserted (`Model::insert(conn, new)`); to move data between tenants, copy it with an audited job"
)]
pub trait NotTheTenantColumn {}
impl NotTheTenantColumn for No {}

/// The SQL name `table!` gave `T` (its `#[sql_name = ".."]`, else the module's name), as a
/// constant: what a declaration records, so that [`crate::scope::declare_tables`] checks the table the
/// queries read. A table in a named schema (whose name Diesel keeps in a private node) falls
/// back to `module`.
pub const fn sql_name<T>(module: &'static str) -> &'static str
where
    T: StaticQueryFragment + SqlNameOf<<T as StaticQueryFragment>::Component>,
{
    match <T as SqlNameOf<<T as StaticQueryFragment>::Component>>::NAME {
        Some(name) => name,
        None => module,
    }
}

/// The SQL name of a table whose `table!` node is `C` (see [`sql_name`]).
pub trait SqlNameOf<C> {
    /// The name, when Diesel's node lets it be read.
    const NAME: Option<&'static str>;
}

impl<T> SqlNameOf<Identifier<'static>> for T
where
    T: StaticQueryFragment<Component = Identifier<'static>>,
{
    const NAME: Option<&'static str> = Some(T::STATIC_COMPONENT.0);
}

impl<T, S, N, M> SqlNameOf<InfixNode<S, N, M>> for T
where
    T: StaticQueryFragment<Component = InfixNode<S, N, M>>,
{
    const NAME: Option<&'static str> = None;
}

/// Which `tenants` table a global table must not be tied to by `joinable!` (tenantry's own,
/// the one the README's schema uses).
type Tenants = crate::schema::tables::tenants::table;

/// Probes, at compile time, whether a `#[global_table]`'s table is tied to `tenants` by
/// `joinable!` (autoref specialization; used by generated code, not public API).
pub struct TenantsProbe<T>(PhantomData<T>);

impl<T> TenantsProbe<T> {
    /// A probe of `T`.
    pub fn new() -> &'static Self {
        &TenantsProbe(PhantomData)
    }
}

/// The probe's answer for a table `joinable!` ties to `tenants`.
pub trait TiedToTenants<T> {
    /// Answers.
    fn tenantry_tenants(&self) -> Tied<T> {
        Tied(PhantomData)
    }
}
impl<T: JoinTo<Tenants>> TiedToTenants<T> for TenantsProbe<T> {}

/// The probe's answer for any other table.
pub trait NotTiedToTenants {
    /// Answers.
    fn tenantry_tenants(&self) -> NotTied {
        NotTied
    }
}
impl<T> NotTiedToTenants for &TenantsProbe<T> {}

/// A table not tied to `tenants`: fine.
pub struct NotTied;
impl NotTied {
    /// Fine.
    pub fn global(self) {}
}

/// A table tied to `tenants`: [`Tied::global`] does not compile.
pub struct Tied<T>(PhantomData<T>);
impl<T> Tied<T> {
    /// Does not compile: `T` is not [`NotJoinedToTenants`].
    pub fn global(self)
    where
        T: NotJoinedToTenants,
    {
    }
}

/// Never implemented: carries the compile error of `#[global_table]` on a table that
/// `joinable!` ties to `tenants`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be declared `#[global_table]`: `joinable!` ties it to `tenants`",
    label = "a table with a foreign key to `tenants` holds rows of tenants",
    note = "declare it with `#[tenant_table(column = <its tenant column>)]` (the column `joinable!` names), so that every query on it is scoped and row-level security covers it"
)]
pub trait NotJoinedToTenants {}
