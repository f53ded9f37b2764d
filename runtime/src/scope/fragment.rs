//! SQL fragments in tenant queries: tenantry's literal fragment ([`SqlFragment`], made by
//! `tenantry::sql!`) and the refusal of fragments whose text was built at run time
//! ([`RuntimeSqlFragment`]).
//!
//! Diesel's `diesel::dsl::sql(text)` takes any `&str`, so `sql(&format!(..))` compiles wherever
//! an expression does, and an injection into the formatted string rewrites the query. No bound
//! can refuse it at compile time: Diesel declares its `SqlLiteral` valid on every query source
//! (as it does a bound value), and the one thing that tells it apart from a bound value, a
//! non-static query id, it shares with `eq_any` over a list and with boxed queries, which are
//! safe. What does tell it apart is what Diesel's `SqlLiteral` says of itself when a query is
//! built: that the statement is unsafe to cache as a prepared statement (Diesel cannot know
//! whether its text was built at run time). So a tenant connection refuses, before sending
//! anything, a filter, selection, order or update value so marked; a [`SqlFragment`] is not
//! marked, because its text is a literal fixed at compile time.

use std::fmt;
use std::marker::PhantomData;
use std::panic::Location;

use diesel::backend::Backend;
use diesel::expression::{
    is_aggregate, AppearsOnTable, Expression, SelectableExpression, TypedExpressionType,
    ValidGrouping,
};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::QueryResult;

/// A SQL fragment whose text is a string literal fixed at compile time, made by
/// `tenantry::sql!("..")` (of SQL type `Bool`) or `tenantry::sql!(Text, "..")`.
///
/// It stands wherever Diesel's `diesel::dsl::sql` would (a scoped query's filter, selection or
/// order, an update's value), and combines with Diesel's operators, which bind values:
/// `tenantry::sql!(Text, "lower(name)").eq(name)`.
///
/// Each `sql!` call site is its own `Site` type, which holds the text: the fragment has a static
/// query id (prepared-statement caches key statements by that type) that no other text shares.
pub struct SqlFragment<ST, Site> {
    _marker: PhantomData<fn() -> (ST, Site)>,
}

/// The text of one `tenantry::sql!` call site, a constant: what [`SqlFragment`] renders.
///
/// Used by generated code: `tenantry::sql!` implements it for a type it declares at the call
/// site.
pub trait FragmentSite: 'static {
    /// The SQL text, exactly as written in the literal.
    const SQL: &'static str;
}

impl<ST, Site> SqlFragment<ST, Site> {
    pub(crate) fn new() -> Self {
        SqlFragment {
            _marker: PhantomData,
        }
    }
}

impl<ST, Site: FragmentSite> fmt::Debug for SqlFragment<ST, Site> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SqlFragment").field(&Site::SQL).finish()
    }
}

impl<ST, Site> Clone for SqlFragment<ST, Site> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<ST, Site> Copy for SqlFragment<ST, Site> {}

impl<ST: TypedExpressionType, Site: FragmentSite> Expression for SqlFragment<ST, Site> {
    type SqlType = ST;
}

/// Like Diesel's `sql()`, a fragment may stand on any query source: its text is the developer's,
/// fixed at compile time and visible in review, and row-level security still applies to it.
impl<ST, Site, QS> AppearsOnTable<QS> for SqlFragment<ST, Site> where Self: Expression {}

impl<ST, Site, QS> SelectableExpression<QS> for SqlFragment<ST, Site> where Self: Expression {}

impl<ST, Site, GB> ValidGrouping<GB> for SqlFragment<ST, Site> {
    type IsAggregate = is_aggregate::Never;
}

impl<ST: 'static, Site: FragmentSite> QueryId for SqlFragment<ST, Site> {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<ST, Site: FragmentSite, DB: Backend> QueryFragment<DB> for SqlFragment<ST, Site> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(Site::SQL);
        Ok(())
    }
}

/// What `tenantry::sql!` expands to: the fragment of call site `Site`.
pub fn sql_fragment<ST: TypedExpressionType, Site: FragmentSite>() -> SqlFragment<ST, Site> {
    SqlFragment::new()
}

/// Where in a tenant query a fragment built at run time was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FragmentPlace {
    /// `.filter(..)` (also the `WHERE` clause of a scoped update or delete).
    Filter,
    /// `.select(..)`.
    Selection,
    /// `.order(..)`, `.order_by(..)`, `.then_order_by(..)`.
    Order,
    /// The value of `column.to(..)` in an update or upsert.
    UpdateValue,
}

impl fmt::Display for FragmentPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FragmentPlace::Filter => "filter",
            FragmentPlace::Selection => "selection",
            FragmentPlace::Order => "order",
            FragmentPlace::UpdateValue => "value of `column.to(..)`",
        })
    }
}

/// The error of a tenant query whose filter, selection, order or update value holds SQL text
/// built at run time (Diesel's `diesel::dsl::sql`, `SqlLiteral::sql`): the tenant connection
/// refuses it before sending anything, in every build profile.
///
/// It reaches the caller as [`diesel::result::Error::QueryBuilderError`] (so
/// `DbError::Query(..)`); its message names the place and the source line of the fragment, and
/// the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSqlFragment {
    place: FragmentPlace,
    location: &'static Location<'static>,
}

impl RuntimeSqlFragment {
    /// Where in the query the fragment was found.
    pub fn place(&self) -> FragmentPlace {
        self.place
    }

    /// The source line of the `.filter(..)`, `.select(..)`, `.order(..)` or `column.to(..)` that
    /// took it.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl fmt::Display for RuntimeSqlFragment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a tenant connection refused this query before sending it: the {} at {} holds SQL \
             text built at run time (`diesel::dsl::sql`), which an injection could rewrite; \
             write the fragment as a literal with `tenantry::sql!(\"..\")` and pass values \
             through Diesel's operators (`tenantry::sql!(Text, \"lower(name)\").eq(name)`), \
             since `.bind(..)` binds values but leaves the text as it was built; SQL that must \
             be built at run time runs under `no_tenant_scope!` with `conn.raw_load` or \
             `conn.raw_execute`",
            self.place, self.location
        )
    }
}

impl std::error::Error for RuntimeSqlFragment {}

impl From<RuntimeSqlFragment> for diesel::result::Error {
    fn from(refused: RuntimeSqlFragment) -> Self {
        diesel::result::Error::QueryBuilderError(Box::new(refused))
    }
}

/// The refusal of `expr`, taken at `place` on the source line `location`, if it holds SQL text
/// built at run time.
///
/// An expression with a static query id holds none (Diesel's `SqlLiteral` has none), and costs
/// nothing here. Any other (a fragment, but also `eq_any` over a list, a boxed subquery) is
/// walked once: Diesel's `SqlLiteral` marks the query unsafe to cache as a prepared statement,
/// whatever its text. (So does `eq_any` over a list of array values, the one safe form refused.)
pub(crate) fn refusal<E>(
    expr: &E,
    place: FragmentPlace,
    location: &'static Location<'static>,
) -> Option<RuntimeSqlFragment>
where
    E: QueryFragment<Pg> + QueryId,
{
    if E::HAS_STATIC_QUERY_ID {
        return None;
    }
    match expr.is_safe_to_cache_prepared(&Pg) {
        Ok(true) => None,
        // An expression that cannot even be walked is refused as well: fail closed.
        Ok(false) | Err(_) => Some(RuntimeSqlFragment { place, location }),
    }
}
