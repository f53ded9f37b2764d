//! Citus readiness, checked from the catalogs (of plain PostgreSQL, or of a coordinator): what
//! `tenantry doctor --citus` reports and the script `tenantry citus-plan` prints, which applies
//! as printed on Citus 13.2 (`examples/tests/it/citus_cluster.rs` applies it on a running cluster).
//!
//! Citus shards a multi-tenant database by the tenant column: each declared tenant table becomes
//! a *distributed* table on `tenant_id`, all of them colocated, so that one tenant's rows of every
//! table live on one shard and a query filtered by `tenant_id = $n` runs on that shard alone.
//! Declared global tables become *reference* tables, copied to every node. tenantry's own tables
//! (all in the schema `tenantry`, `tenantry_migrations` of the earlier runner aside):
//!
//! | table | on Citus | why |
//! |---|---|---|
//! | `tenants`, `users` | reference | small, read on every request (the principal lookup), joined with everything |
//! | `memberships` | reference | it has a `tenant_id`, but it is read by user (all of one user's tenants at once), and it is small; distributing it by tenant would make every principal lookup a query of all shards |
//! | `audit_log` | local to the coordinator (`citus_add_local_table_to_metadata`) | append-only and written rarely (Owner routes, jobs, raw statements); a reference table would copy each row to every node in a two-phase commit, and its `tenant_id` is NULL for cross-tenant rows, which a distribution column cannot be |
//! | `tenantry_tenant_keys` | reference | the tenant seal's keys: the workers verify the seal too (migration `0012_citus`) |
//! | `tenantry_jobs` | distributed, like any declared tenant table | the job queue (migration `0011_job_queue`) |
//! | `tenantry_migrations`, `tenantry_declared_tables` | plain local tables | bookkeeping read by migrations and `tenantry doctor` only |
//!
//! Citus's rules, which [`check`] applies without Citus: a distributed table's primary key,
//! unique constraints, unique indexes and exclusion constraints include its distribution
//! column; a foreign key between two distributed tables pairs their distribution columns; a
//! distributed table may reference reference tables, never local ones; a reference table may
//! reference only reference tables; no local table may reference a distributed one.

mod cluster;
mod finding;
mod script;

use std::collections::{BTreeMap, BTreeSet};

pub use finding::CitusFinding;
pub use script::ForeignKeyStep;

use diesel::sql_types::{Array, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// What a table becomes on Citus (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `create_distributed_table(table, column, colocate_with => ..)`: a declared tenant table.
    Distributed {
        /// The distribution (tenant) column.
        column: String,
    },
    /// `create_reference_table(table)`: a declared global table, and tenantry's directory.
    Reference,
    /// `citus_add_local_table_to_metadata(table)`: `audit_log`, on the coordinator.
    CoordinatorLocal,
    /// Left alone: a table tenantry does not know (plain PostgreSQL on the coordinator).
    Local,
}

impl Placement {
    fn name(&self) -> &'static str {
        match self {
            Placement::Distributed { .. } => "distributed",
            Placement::Reference => "reference",
            Placement::CoordinatorLocal | Placement::Local => "local",
        }
    }
}

/// One step of [`CitusReport::plan`]: a table and what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStep {
    /// `schema.table`.
    pub table: String,
    /// What it becomes.
    pub placement: Placement,
    /// For the second and later distributed tables: the first one, which they are colocated
    /// with.
    pub colocate_with: Option<String>,
}

impl PlanStep {
    /// The step's SQL (one statement, no trailing newline).
    pub fn sql(&self) -> String {
        let t = quote_literal(&self.table);
        match &self.placement {
            Placement::Distributed { column } => match &self.colocate_with {
                None => format!(
                    "SELECT create_distributed_table({t}, {});",
                    quote_literal(column)
                ),
                Some(first) => format!(
                    "SELECT create_distributed_table({t}, {}, colocate_with => {});",
                    quote_literal(column),
                    quote_literal(first)
                ),
            },
            Placement::Reference => format!("SELECT create_reference_table({t});"),
            Placement::CoordinatorLocal => {
                format!("SELECT citus_add_local_table_to_metadata({t});")
            }
            Placement::Local => format!("-- {} stays a plain local table", self.table),
        }
    }
}

/// What [`check`] found: the placement plan in dependency order and the rules broken.
#[derive(Debug, Clone, Default)]
pub struct CitusReport {
    /// Reference tables (referenced ones first), the coordinator-local `audit_log`, then the
    /// distributed tables (referenced ones first), all colocated with the first.
    pub plan: Vec<PlanStep>,
    /// Every rule broken; empty when the schema is ready.
    pub findings: Vec<CitusFinding>,
    /// The foreign keys of the tables still to distribute, dropped before the steps and added
    /// back after them (see [`CitusReport::script`]).
    pub foreign_keys: Vec<ForeignKeyStep>,
    /// Tables Citus already holds as planned (`schema.table`): the script skips their steps. (A
    /// table Citus turned into a Citus local table is still to distribute or replicate.)
    pub placed: BTreeSet<String>,
}

impl CitusReport {
    /// Whether the schema is ready for Citus.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// The plan as one SQL script for the coordinator, which applies as printed on Citus 13.2:
    /// one transaction that prepares tenantry for Citus (the seal, the policies, the app role's
    /// `citus.propagate_set_commands`), then places every table not placed yet.
    pub fn script(&self, app_role: &str) -> String {
        script::render(self, app_role)
    }
}

#[derive(QueryableByName)]
struct DeclaredRow {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    column: Option<String>,
}

#[derive(QueryableByName)]
struct TableRow {
    #[diesel(sql_type = Text)]
    table: String,
}

#[derive(QueryableByName)]
struct ConstraintRow {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    constraint: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    columns: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Text>)]
    references: Option<String>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    ref_columns: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Text>)]
    definition: Option<String>,
}

const DECLARED_SQL: &str = concat!(
    r#"
SELECT d.table_schema || '.' || d.table_name AS "table", d.kind, d.tenant_column AS "column"
FROM "#,
    schema_name!(),
    r#".tenantry_declared_tables d
JOIN pg_namespace n ON n.nspname = d.table_schema
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = d.table_name AND c.relkind IN ('r', 'p')
ORDER BY 1
"#
);

const TABLES_SQL: &str = r#"
SELECT n.nspname || '.' || c.relname AS "table"
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1
"#;

/// Primary keys, unique and exclusion constraints, foreign keys, and unique indexes that back
/// no constraint (kind `i`), with their key columns (an expression has no column).
const CONSTRAINTS_SQL: &str = r#"
SELECT n.nspname || '.' || c.relname AS "table", k.conname::text AS "constraint",
       k.contype::text AS kind,
       (SELECT array_agg(a.attname::text ORDER BY u.ord)
          FROM unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum) AS columns,
       rn.nspname || '.' || r.relname AS "references",
       (SELECT array_agg(a.attname::text ORDER BY u.ord)
          FROM unnest(k.confkey) WITH ORDINALITY AS u(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.attnum) AS ref_columns,
       CASE WHEN k.contype = 'f' THEN pg_get_constraintdef(k.oid) END AS definition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class r ON r.oid = k.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE k.contype IN ('p', 'u', 'x', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
UNION ALL
SELECT n.nspname || '.' || c.relname, ic.relname::text, 'i',
       (SELECT array_agg(a.attname::text)
          FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) AS u(attnum)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum),
       NULL, NULL, NULL
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                  AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1, 2
"#;

/// Checks the database `conn` is connected to against Citus's rules for the placement tenantry
/// gives each table (see the module docs), and plans the placements. Needs tenantry's
/// migrations (`tenantry_declared_tables`); run it as any role that can read the catalogs.
#[allow(
    clippy::disallowed_methods,
    reason = "the Citus check's catalog queries, literal SQL"
)]
pub async fn check(conn: &mut AsyncPgConnection) -> diesel::QueryResult<CitusReport> {
    let declared: Vec<DeclaredRow> = diesel::sql_query(DECLARED_SQL).load(conn).await?;
    let tables: Vec<TableRow> = diesel::sql_query(TABLES_SQL).load(conn).await?;
    let constraints: Vec<ConstraintRow> = diesel::sql_query(CONSTRAINTS_SQL).load(conn).await?;

    let mut placement: BTreeMap<String, Placement> = tables
        .into_iter()
        .map(|t| (t.table, Placement::Local))
        .collect();
    for d in declared {
        let p = match (d.kind.as_str(), d.column) {
            ("tenant", Some(column)) => Placement::Distributed { column },
            _ if d.table == concat!(schema_name!(), ".audit_log") => Placement::CoordinatorLocal,
            _ => Placement::Reference,
        };
        placement.insert(d.table, p);
    }
    // The seal's keys: the workers verify the seal too.
    for (table, p) in placement.iter_mut() {
        if table == concat!(schema_name!(), ".tenantry_tenant_keys") {
            *p = Placement::Reference;
        }
    }
    let placement_of = |t: &str| placement.get(t).cloned().unwrap_or(Placement::Local);

    let mut report = CitusReport::default();
    if cluster::installed(conn).await? {
        for (table, held) in cluster::placed(conn).await? {
            let done = matches!(
                (placement_of(&table), held),
                (Placement::Distributed { .. }, cluster::Held::Distributed)
                    | (Placement::Reference, cluster::Held::Reference)
                    | (Placement::CoordinatorLocal, _)
            );
            if done {
                report.placed.insert(table);
            }
        }
    }
    let replicated = |t: &str| match placement_of(t) {
        p @ (Placement::Distributed { .. } | Placement::Reference) => Some(p.name()),
        _ => None,
    };
    for p in cluster::policies_with_subqueries(conn).await? {
        if let Some(placement) = replicated(&p.table) {
            report.findings.push(CitusFinding::PolicyWithSubquery {
                table: p.table,
                placement,
                policy: p.name,
            });
        }
    }
    for t in cluster::triggers(conn).await? {
        if let Some(placement) = replicated(&t.table) {
            report.findings.push(CitusFinding::Trigger {
                table: t.table,
                placement,
                trigger: t.name,
            });
        }
    }
    for c in constraints.iter().filter(|c| c.kind == "f") {
        let to_distribute = matches!(placement_of(&c.table), Placement::Distributed { .. })
            && !report.placed.contains(&c.table);
        if let (true, Some(definition)) = (to_distribute, &c.definition) {
            report.foreign_keys.push(ForeignKeyStep {
                table: c.table.clone(),
                constraint: c.constraint.clone(),
                definition: definition.clone(),
            });
        }
    }
    let mut references: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in &constraints {
        let here = placement_of(&c.table);
        let columns = c.columns.clone().unwrap_or_default();
        if c.kind == "f" {
            let Some(target) = &c.references else {
                continue;
            };
            if target != &c.table {
                references
                    .entry(c.table.clone())
                    .or_default()
                    .insert(target.clone());
            }
            let there = placement_of(target);
            let allowed = match (&here, &there) {
                (Placement::Distributed { .. }, Placement::Distributed { .. })
                | (Placement::Distributed { .. }, Placement::Reference)
                | (Placement::Reference, Placement::Reference) => true,
                (Placement::CoordinatorLocal | Placement::Local, Placement::Distributed { .. }) => {
                    false
                }
                (Placement::CoordinatorLocal | Placement::Local, _) => true,
                _ => false,
            };
            if !allowed {
                report
                    .findings
                    .push(CitusFinding::ForeignKeyAcrossPlacements {
                        table: c.table.clone(),
                        placement: here.name(),
                        constraint: c.constraint.clone(),
                        references: target.clone(),
                        referenced_placement: there.name(),
                    });
                continue;
            }
            if let (
                Placement::Distributed { column },
                Placement::Distributed {
                    column: ref_column, ..
                },
            ) = (&here, &there)
            {
                let ref_columns = c.ref_columns.clone().unwrap_or_default();
                let paired = columns
                    .iter()
                    .zip(&ref_columns)
                    .any(|(a, b)| a == column && b == ref_column);
                if !paired {
                    report
                        .findings
                        .push(CitusFinding::ForeignKeyWithoutTenantColumn {
                            table: c.table.clone(),
                            constraint: c.constraint.clone(),
                            references: target.clone(),
                            column: column.clone(),
                        });
                }
            }
            continue;
        }
        if let Placement::Distributed { column } = &here {
            if !columns.contains(column) {
                let kind = match c.kind.as_str() {
                    "p" => "primary key",
                    "u" => "unique constraint",
                    "x" => "exclusion constraint",
                    _ => "unique index",
                };
                report.findings.push(CitusFinding::KeyWithoutTenantColumn {
                    table: c.table.clone(),
                    kind,
                    constraint: c.constraint.clone(),
                    column: column.clone(),
                });
            }
        }
    }

    // Dependency order: reference tables, audit_log, distributed tables; inside each group a
    // referenced table comes before the tables that reference it.
    let group = |p: &Placement| match p {
        Placement::Reference => Some(0),
        Placement::CoordinatorLocal => Some(1),
        Placement::Distributed { .. } => Some(2),
        Placement::Local => None,
    };
    let mut ordered: Vec<(String, Placement)> = Vec::new();
    for g in 0..3 {
        let mut pending: Vec<(&String, &Placement)> = placement
            .iter()
            .filter(|(_, p)| group(p) == Some(g))
            .collect();
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .position(|(t, _)| {
                    references.get(*t).is_none_or(|targets| {
                        targets
                            .iter()
                            .all(|r| !pending.iter().any(|(p, _)| *p == r))
                    })
                })
                // A cycle: take the first; Citus takes cycles among reference tables too.
                .unwrap_or(0);
            let (t, p) = pending.remove(ready);
            ordered.push((t.clone(), p.clone()));
        }
    }
    let first_distributed = ordered
        .iter()
        .find(|(_, p)| matches!(p, Placement::Distributed { .. }))
        .map(|(t, _)| t.clone());
    report.plan = ordered
        .into_iter()
        .map(|(table, placement)| {
            let colocate_with = match &placement {
                Placement::Distributed { .. } => {
                    first_distributed.clone().filter(|first| first != &table)
                }
                _ => None,
            };
            PlanStep {
                table,
                placement,
                colocate_with,
            }
        })
        .collect();
    Ok(report)
}

/// The finding about `app_role`'s `citus.propagate_set_commands` on a database where Citus
/// already places tables (before the plan ran, its script sets it), if it is not `local`.
pub async fn check_app_role(
    conn: &mut AsyncPgConnection,
    app_role: &str,
) -> diesel::QueryResult<Option<CitusFinding>> {
    if !cluster::installed(conn).await? || cluster::placed(conn).await?.is_empty() {
        return Ok(None);
    }
    let value = cluster::propagate_set_commands(conn, app_role).await?;
    Ok(
        (value.as_deref() != Some("local")).then(|| CitusFinding::SetCommandsNotPropagated {
            role: app_role.to_owned(),
            value,
        }),
    )
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests;
