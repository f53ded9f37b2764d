//! Checks made against a table's Diesel schema (`table!`), not a model's fields: the names of its
//! columns (evaluated at compile time by the code `#[tenant_table]` / `#[global_table]`
//! generate), the tenant column's SQL type, and whether a column is the tenant column.

use diesel::expression::is_contained_in_group_by::{No, Yes};
use diesel::expression::IsContainedInGroupBy;
use diesel::query_source::Column;
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
