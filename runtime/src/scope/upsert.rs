//! Scoped upserts: `Model::insert(conn, new).on_conflict((t::tenant_id, t::number))` then
//! `.do_nothing()` or `.do_update().set(changes)`.
//!
//! An upsert stays inside the tenant when its conflict target leads with the tenant column (a
//! unique constraint without it spans tenants, and the conflicting row could be another
//! tenant's) and its changes do not set the tenant column: both are checked at compile time.
//! Diesel's own `on_conflict` builds types private to Diesel, so tenantry renders the clause
//! itself (`ON CONFLICT (..) DO NOTHING | DO UPDATE SET ..`) after Diesel's `INSERT`.

use diesel::expression::is_contained_in_group_by::Yes;
use diesel::expression::{Expression, IsContainedInGroupBy, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{
    AsChangeset, AsQuery, AstPass, InsertStatement, Query, QueryFragment, QueryId,
};
use diesel::query_source::Column;
use diesel::{QueryResult, SelectableExpression};

use crate::scope::changes::CheckedChanges;
use crate::scope::columns::{Both, SameColumn};
use crate::scope::insert::ScopedInsert;
use crate::scope::table::TenantTable;

/// One column of a conflict target, of table `T`; `IsTenant` says whether it is `T`'s tenant
/// column (`Yes` or `No`).
pub trait TargetColumn<T: TenantTable> {
    /// `Yes` for the tenant column.
    type IsTenant;
    /// Writes `"column"`.
    fn walk_name(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()>;
}

impl<T, C> TargetColumn<T> for C
where
    T: TenantTable,
    C: Column<Table = T> + IsContainedInGroupBy<T::TenantColumn>,
    T::TenantColumn: IsContainedInGroupBy<C>,
    <C as IsContainedInGroupBy<T::TenantColumn>>::Output:
        Both<<T::TenantColumn as IsContainedInGroupBy<C>>::Output>,
{
    type IsTenant = SameColumn<C, T::TenantColumn>;

    fn walk_name(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        out.push_identifier(C::NAME)
    }
}

/// A conflict target of table `T`: its tenant column alone, or a tuple of columns that leads
/// with it (as the unique constraints of a tenant table should: `UNIQUE (tenant_id, number)`).
/// `M` tells the two shapes apart.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a conflict target of this tenant table",
    label = "name a unique constraint's columns, tenant column first: `on_conflict((invoices::tenant_id, invoices::number))`"
)]
pub trait ConflictTarget<T: TenantTable, M> {
    /// Whether the target leads with the tenant column (`Yes`) or not (`No`).
    type LeadsWithTenant;
    /// Writes `"a", "b"`.
    fn walk_names(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()>;
}

/// Shape of a one-column conflict target.
#[derive(Debug)]
pub enum OneColumn {}
/// Shape of a tuple conflict target.
#[derive(Debug)]
pub enum Columns {}

impl<T: TenantTable, C: TargetColumn<T>> ConflictTarget<T, OneColumn> for C {
    type LeadsWithTenant = C::IsTenant;
    fn walk_names(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        C::walk_name(out)
    }
}

macro_rules! conflict_tuple {
    ($first:ident $(, $rest:ident)*) => {
        impl<T, $first $(, $rest)*> ConflictTarget<T, Columns> for ($first, $($rest,)*)
        where
            T: TenantTable,
            $first: TargetColumn<T>,
            $($rest: TargetColumn<T>,)*
        {
            type LeadsWithTenant = <$first as TargetColumn<T>>::IsTenant;

            fn walk_names(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
                <$first as TargetColumn<T>>::walk_name(out)?;
                $(
                    out.push_sql(", ");
                    <$rest as TargetColumn<T>>::walk_name(out)?;
                )*
                Ok(())
            }
        }
    };
}

conflict_tuple!(A);
conflict_tuple!(A, B);
conflict_tuple!(A, B, C);
conflict_tuple!(A, B, C, D);
conflict_tuple!(A, B, C, D, E);
conflict_tuple!(A, B, C, D, E, F);

/// `Yes`, the answer for a conflict target that leads with the tenant column.
#[diagnostic::on_unimplemented(
    message = "a scoped upsert's conflict target must lead with the tenant column",
    label = "a unique constraint without `tenant_id` spans tenants: the conflicting row could be another tenant's",
    note = "give the table a unique constraint that leads with the tenant column and name it: `on_conflict((invoices::tenant_id, invoices::number))`"
)]
pub trait LeadsWithTheTenantColumn {}
impl LeadsWithTheTenantColumn for Yes {}

/// An insert with its conflict target, waiting for `do_nothing()` or `do_update()`.
#[derive(Debug)]
#[must_use = "an upsert needs its action: `.do_nothing()` or `.do_update().set(..)`"]
pub struct ScopedOnConflict<'tx, S, Target> {
    insert: ScopedInsert<'tx, S>,
    target: std::marker::PhantomData<Target>,
}

/// `.do_update()` of a scoped upsert, waiting for its changes.
#[derive(Debug)]
#[must_use = "an upsert's update needs its changes: `.set(..)`"]
pub struct ScopedDoUpdate<'tx, S, Target> {
    insert: ScopedInsert<'tx, S>,
    target: std::marker::PhantomData<Target>,
}

/// What a scoped upsert does on a conflict.
#[derive(Debug, Clone, Copy)]
pub enum OnConflictAction<C> {
    /// `DO NOTHING`.
    Nothing,
    /// `DO UPDATE SET <changes>`.
    Update(C),
}

/// The statement of `insert(..).on_conflict(..).do_update().set(changes)`.
pub type UpsertUpdate<T, U, Op, Target, Changes> =
    Upsert<InsertStatement<T, U, Op>, Target, <Changes as AsChangeset>::Changeset>;

/// The statement of a scoped upsert: Diesel's `INSERT`, then the `ON CONFLICT` clause.
#[derive(Debug)]
pub struct Upsert<S, Target, C> {
    insert: S,
    action: OnConflictAction<C>,
    target: std::marker::PhantomData<Target>,
}

impl<'tx, T, U, Op> ScopedInsert<'tx, InsertStatement<T, U, Op>>
where
    T: TenantTable,
{
    /// `ON CONFLICT (<target>)`: the columns of a unique constraint, leading with the tenant
    /// column (checked at compile time): `on_conflict((invoices::tenant_id, invoices::number))`.
    pub fn on_conflict<Target, M>(
        self,
        _target: Target,
    ) -> ScopedOnConflict<'tx, InsertStatement<T, U, Op>, (Target, M)>
    where
        Target: ConflictTarget<T, M>,
        Target::LeadsWithTenant: LeadsWithTheTenantColumn,
    {
        ScopedOnConflict {
            insert: self,
            target: std::marker::PhantomData,
        }
    }
}

impl<'tx, S> ScopedInsert<'tx, S> {
    /// Not available: `ON CONFLICT DO NOTHING` without a target would skip a row that conflicts
    /// with another tenant's. This exists only to say so at compile time.
    #[doc(hidden)]
    pub fn on_conflict_do_nothing(self) -> Self
    where
        S: NamesItsTarget,
    {
        self
    }
}

mod sealed_target {
    pub trait Sealed {}
}

/// Never implemented: carries the compile error of `on_conflict_do_nothing()` on a scoped insert.
#[diagnostic::on_unimplemented(
    message = "a scoped upsert names its conflict target, leading with the tenant column",
    label = "without a target, a conflict with another tenant's row would be skipped silently",
    note = "write `.on_conflict((invoices::tenant_id, invoices::number)).do_nothing()`"
)]
pub trait NamesItsTarget: sealed_target::Sealed {}

impl<'tx, S, Target> ScopedOnConflict<'tx, S, Target> {
    /// `DO NOTHING`: a conflicting row (of this tenant) is left as it is.
    pub fn do_nothing(self) -> ScopedInsert<'tx, Upsert<S, Target, ()>> {
        let insert = self.insert.into_statement();
        ScopedInsert::new(Upsert {
            insert,
            action: OnConflictAction::Nothing,
            target: std::marker::PhantomData,
        })
    }

    /// `DO UPDATE`: the conflicting row (of this tenant) takes the changes given to `.set(..)`.
    pub fn do_update(self) -> ScopedDoUpdate<'tx, S, Target> {
        ScopedDoUpdate {
            insert: self.insert,
            target: std::marker::PhantomData,
        }
    }
}

impl<'tx, T, U, Op, Target> ScopedDoUpdate<'tx, InsertStatement<T, U, Op>, Target>
where
    T: TenantTable,
{
    /// `DO UPDATE SET <changes>`: `column.to(value)` assignments (use [`crate::scope::excluded`]
    /// for the proposed row's values) or tenantry's `#[derive(AsChangeset)]`; the tenant column
    /// cannot be set.
    pub fn set<Changes>(
        self,
        changes: Changes,
    ) -> ScopedInsert<'tx, UpsertUpdate<T, U, Op, Target, Changes>>
    where
        Changes: AsChangeset<Target = T>,
        Changes::Changeset: CheckedChanges,
    {
        ScopedInsert::new(Upsert {
            insert: self.insert.into_statement(),
            action: OnConflictAction::Update(changes.as_changeset()),
            target: std::marker::PhantomData,
        })
    }
}

impl<T, U, Op, Target, M, C> QueryFragment<Pg> for Upsert<InsertStatement<T, U, Op>, (Target, M), C>
where
    T: TenantTable,
    InsertStatement<T, U, Op>: QueryFragment<Pg>,
    Target: ConflictTarget<T, M>,
    C: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.insert.walk_ast(out.reborrow())?;
        out.push_sql(" ON CONFLICT (");
        Target::walk_names(&mut out)?;
        out.push_sql(")");
        match &self.action {
            OnConflictAction::Nothing => out.push_sql(" DO NOTHING"),
            OnConflictAction::Update(changes) => {
                out.push_sql(" DO UPDATE SET ");
                changes.walk_ast(out.reborrow())?;
            }
        }
        Ok(())
    }
}

impl<S, Target, C> QueryId for Upsert<S, Target, C> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// `.get_result(conn)` of an upsert: the inserted (or updated) row, `RETURNING` every column.
impl<T, U, Op, Target, C> AsQuery for Upsert<InsertStatement<T, U, Op>, Target, C>
where
    T: TenantTable,
    T::AllColumns: Expression + SelectableExpression<T> + ValidGrouping<()> + QueryFragment<Pg>,
    <T::AllColumns as Expression>::SqlType: diesel::sql_types::SqlType,
    Self: QueryFragment<Pg>,
{
    type SqlType = <T::AllColumns as Expression>::SqlType;
    type Query = Returning<Self, T::AllColumns>;

    fn as_query(self) -> Self::Query {
        Returning {
            statement: self,
            columns: T::all_columns(),
        }
    }
}

/// A statement followed by `RETURNING <columns>`.
#[derive(Debug)]
pub struct Returning<S, R> {
    statement: S,
    columns: R,
}

impl<S, R> Query for Returning<S, R>
where
    R: Expression,
    R::SqlType: diesel::sql_types::SqlType,
{
    type SqlType = R::SqlType;
}

impl<S, R> QueryId for Returning<S, R> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S: QueryFragment<Pg>, R: QueryFragment<Pg>> QueryFragment<Pg> for Returning<S, R> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.statement.walk_ast(out.reborrow())?;
        out.push_sql(" RETURNING ");
        self.columns.walk_ast(out.reborrow())
    }
}
