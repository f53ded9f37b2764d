//! SQL written for tenantry's default schema name, `tenantry`, rendered for the schema this build
//! names (`TENANTRY_SCHEMA`, [`NAME`](crate::schema::tables::NAME)): tenantry's own migrations,
//! its roles and grants, and any migrations an application writes the same way
//! ([`RenderedMigrations`]).
//!
//! The SQL stays readable and runs as written when the name is the default (rendering is then
//! the identity). What [`render`] rewrites, and only that:
//!
//! - `tenantry.` before an object's name (`tenantry.tenants`, `'tenantry.tenants'::regclass`,
//!   `format('tenantry.%I', ..)`), but not the setting `tenantry.tenant` (a GUC: its name is
//!   the same in every schema);
//! - the schema named alone where SQL names a schema: `SCHEMA tenantry`, `search_path =
//!   tenantry, ..`, the search path given to `set_config` (`'tenantry, '`), and the literal
//!   `'tenantry'` (`nspname = 'tenantry'`, `'tenantry'::regnamespace`).
//!
//! The word `tenantry` anywhere else stays: `tenantry_` names, the seal's and the audit chain's
//! domain strings (`'tenantry-tx-v1:'`, `'tenantry audit_log v1'`), messages that name the CLI.

use std::borrow::Cow;
use std::fmt;

use diesel::migration::{
    Migration, MigrationMetadata, MigrationName, MigrationSource, MigrationVersion,
};
use diesel::pg::Pg;

/// The default name, as tenantry's SQL spells it.
const WRITTEN: &str = "tenantry";

/// Settings (GUCs) named `tenantry.<name>`: not objects of the schema, never renamed.
pub(crate) const SETTINGS: &[&str] = &["tenant"];

/// SQL written for tenantry's default schema name (`tenantry.tenants`,
/// `tenantry.tenantry_declare_tenant_table(..)`), for this build's schema
/// ([`NAME`](crate::schema::tables::NAME), `TENANTRY_SCHEMA` at build time): `tenantry.` before
/// an object's name becomes `<schema>.`, and so do `SCHEMA tenantry`, a search path naming it and
/// the literal `'tenantry'`; the setting `tenantry.tenant` and every other use of the word stay.
/// Unchanged (borrowed) when the schema is `tenantry`.
///
/// ```
/// use tenantry_runtime::schema::{render_sql, tables::NAME};
///
/// let sql = render_sql("SELECT count(*) FROM tenantry.tenants");
/// assert_eq!(sql, format!("SELECT count(*) FROM {NAME}.tenants"));
/// ```
pub fn render_sql(sql: &str) -> Cow<'_, str> {
    render(sql, crate::schema::tables::NAME)
}

/// `sql`, written for the schema `tenantry`, for the schema `schema` (see the module's docs).
pub(crate) fn render<'a>(sql: &'a str, schema: &str) -> Cow<'a, str> {
    if schema == WRITTEN || !sql.contains(WRITTEN) {
        return Cow::Borrowed(sql);
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(at) = rest.find(WRITTEN) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after = &from[WRITTEN.len()..];
        let starts_word = !out.chars().next_back().is_some_and(word);
        let rename = starts_word && names_schema(&out, after);
        out.push_str(if rename { schema } else { WRITTEN });
        rest = after;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Whether the word `tenantry`, between `before` and `after`, is the schema.
fn names_schema(before: &str, after: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    if let Some(name) = after.strip_prefix('.') {
        // A qualified name, unless it is one of the settings.
        let end = name.find(|c: char| !word(c)).unwrap_or(name.len());
        return !SETTINGS.contains(&&name[..end]);
    }
    if after.starts_with(|c: char| word(c) || c == '-' || c == '\\') {
        return false;
    }
    let before = before.trim_end();
    let upper = |s: &str| s.to_ascii_uppercase();
    upper(before).ends_with("SCHEMA")
        || upper(before).ends_with("SCHEMA IF NOT EXISTS")
        || before.ends_with("search_path =")
        || before.ends_with("search_path=")
        // `'tenantry'` and the search path `'tenantry, ' || ..`.
        || (before.ends_with('\'') && (after.starts_with('\'') || after.starts_with(", '")))
}

/// Migrations written in SQL for the default schema name, `tenantry`, run rendered for this
/// build's schema ([`NAME`](crate::schema::tables::NAME), `TENANTRY_SCHEMA` at build time):
/// tenantry's own ([`FRAMEWORK_MIGRATIONS`](crate::schema::FRAMEWORK_MIGRATIONS)), or an
/// application's that names tenantry's objects (`REFERENCES tenantry.tenants (id)`,
/// `SELECT tenantry.tenantry_declare_tenant_table('notes')`) and should follow the setting.
///
/// Each migration is a name in Diesel's layout (`0001_notes`: the version, `_`, a description)
/// and its `up.sql`; each runs in its own transaction, forward only.
///
/// ```
/// use tenantry_runtime::schema::RenderedMigrations;
///
/// const MIGRATIONS: RenderedMigrations = RenderedMigrations::new(&[(
///     "0001_notes",
///     "CREATE TABLE notes (tenant_id uuid NOT NULL REFERENCES tenantry.tenants (id), body text);
///      SELECT tenantry.tenantry_declare_tenant_table('notes');",
/// )]);
/// # let _ = MIGRATIONS;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RenderedMigrations {
    migrations: &'static [(&'static str, &'static str)],
}

impl RenderedMigrations {
    /// The migrations `(name, up.sql)`, run in the order of their names' versions.
    pub const fn new(migrations: &'static [(&'static str, &'static str)]) -> Self {
        Self { migrations }
    }

    /// The migrations' names and their SQL, rendered for this build's schema.
    pub fn rendered(&self) -> impl Iterator<Item = (&'static str, Cow<'static, str>)> + '_ {
        self.rendered_for(crate::schema::tables::NAME)
    }

    /// [`rendered`](Self::rendered) for the schema `schema` (tests).
    pub(crate) fn rendered_for<'s>(
        &self,
        schema: &'s str,
    ) -> impl Iterator<Item = (&'static str, Cow<'static, str>)> + 's {
        self.migrations
            .iter()
            .map(move |&(name, up)| (name, render(up, schema)))
    }
}

impl MigrationSource<Pg> for RenderedMigrations {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Pg>>>> {
        Ok(self
            .rendered()
            .map(|(name, up)| {
                Box::new(Rendered {
                    name: Name(name),
                    up,
                }) as Box<_>
            })
            .collect())
    }
}

/// One migration, its SQL rendered.
struct Rendered {
    name: Name,
    up: Cow<'static, str>,
}

/// A migration's directory name: its version is what precedes the first `_`.
struct Name(&'static str);

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl MigrationName for Name {
    fn version(&self) -> MigrationVersion<'_> {
        self.0.split_once('_').map_or(self.0, |(v, _)| v).into()
    }
}

/// Every migration runs in its transaction (Diesel's default).
struct InTransaction;

impl MigrationMetadata for InTransaction {}

impl Migration<Pg> for Rendered {
    fn run(
        &self,
        conn: &mut dyn diesel::connection::BoxableConnection<Pg>,
    ) -> diesel::migration::Result<()> {
        conn.batch_execute(&self.up).map_err(|e| Box::new(e) as _)
    }

    fn revert(
        &self,
        _conn: &mut dyn diesel::connection::BoxableConnection<Pg>,
    ) -> diesel::migration::Result<()> {
        Err(Box::new(NoRevert(self.name.0)))
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        &InTransaction
    }

    fn name(&self) -> &dyn MigrationName {
        &self.name
    }
}

/// Rendered migrations run forward only.
#[derive(Debug, thiserror::Error)]
#[error("{0} cannot be reverted: tenantry's rendered migrations run forward only")]
struct NoRevert(&'static str);

#[cfg(test)]
mod tests;
