//! `tenantry audit`: the newest audit log rows as an aligned table, or (`--verify`) the check of
//! the log's hash chain.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenantry::audit_chain;
use tenantry::schema::audit_log;
use uuid::Uuid;

use crate::config::DbTarget;
use crate::error::CliError;

type Row = (i64, DateTime<Utc>, String, String, String, Option<Uuid>);

const HEADER: [&str; 6] = ["ID", "AT", "ACTOR_EMAIL", "ACTION", "REASON", "TENANT_ID"];

/// Prints up to `limit` rows, newest first.
pub(super) async fn run(
    conn: &mut AsyncPgConnection,
    limit: u16,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let rows: Vec<Row> = audit_log::table
        .order((audit_log::at.desc(), audit_log::id.desc()))
        .limit(i64::from(limit))
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor_email,
            audit_log::action,
            audit_log::reason,
            audit_log::tenant_id,
        ))
        .load(conn)
        .await?;
    if rows.is_empty() {
        writeln!(out, "no audit rows")?;
        return Ok(());
    }
    let cells: Vec<[String; 6]> = rows
        .into_iter()
        .map(|(id, at, actor, action, reason, tenant)| {
            [
                id.to_string(),
                at.to_rfc3339_opts(SecondsFormat::Secs, true),
                printable(&actor),
                printable(&action),
                printable(&reason),
                tenant.map_or_else(|| "-".to_owned(), |t| t.to_string()),
            ]
        })
        .collect();
    write_table(out, &HEADER.map(str::to_owned), &cells)
}

/// Recomputes the hash chain from one snapshot; prints the row count and the head, or every
/// break and fails naming the first.
#[allow(
    clippy::disallowed_methods,
    reason = "a literal catalog probe on the CLI's own connection"
)]
pub(super) async fn verify(
    conn: &mut AsyncPgConnection,
    target: &DbTarget,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let chained: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
        "to_regclass('{}.audit_log_chain') IS NOT NULL",
        tenantry::schema::NAME
    )))
    .get_result(conn)
    .await?;
    if !chained {
        return Err(CliError::NotMigrated {
            database: target.database.clone(),
        });
    }
    conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let checked = audit_chain::verify(conn).await;
    conn.batch_execute(if checked.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    })
    .await?;
    let v = checked?;
    let Some(first) = <[_]>::first(&v.breaks) else {
        writeln!(out, "audit chain intact")?;
        writeln!(out, "rows: {}", v.head.rows)?;
        if let Some(id) = v.head.audit_id {
            writeln!(out, "head row: {id}")?;
            writeln!(out, "head hash: {}", v.head.hex())?;
        }
        return Ok(());
    };
    for b in &v.breaks {
        writeln!(out, "broken: {b}")?;
    }
    let listed = v.breaks.len() as u64;
    if v.total_breaks > listed {
        writeln!(out, "… and {} more", v.total_breaks - listed)?;
    }
    Err(CliError::ChainBroken {
        first: first.to_string(),
        more: if v.total_breaks > 1 {
            format!("; {} problems in all, listed above", v.total_breaks)
        } else {
            String::new()
        },
    })
}

/// Escapes control characters so that a row stays on one line and cannot drive the terminal.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn write_table<const N: usize>(
    out: &mut impl Write,
    header: &[String; N],
    rows: &[[String; N]],
) -> Result<(), CliError> {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let header = ["A".to_owned(), "BB".to_owned(), "C".to_owned()];
        let rows = [
            ["1".to_owned(), "x".to_owned(), "last".to_owned()],
            ["100".to_owned(), "yyyy".to_owned(), "-".to_owned()],
        ];
        let mut out = Vec::new();
        write_table(&mut out, &header, &rows).expect("written");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "A    BB    C\n1    x     last\n100  yyyy  -\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }
}
