//! The audit log's hash chain: how a row is hashed, the chain's [`head`], and [`verify`], which
//! recomputes the whole chain and names the rows that break it.
//!
//! When a transaction that wrote `audit_log` rows commits, a deferred trigger owned by the
//! tables' owner links each row into `audit_log_chain`: its position (`seq`, in commit order),
//! the previous link's hash and its own,
//!
//! ```text
//! hash = SHA-256("tenantry audit_log v1" || prev_hash || f(id) || f(at) || f(actor_user_id)
//!                || f(actor_email) || f(action) || f(reason) || f(tenant_id) || f(request_id)
//!                || f(location))
//! ```
//!
//! where `prev_hash` is 32 zero bytes for the first link, `f(NULL)` is the byte `0x00` and
//! `f(v)` is `0x01`, `v`'s length in bytes (4 bytes, big-endian) and `v`'s bytes; `id` is 8 bytes
//! big-endian, `at` its microseconds since 2000-01-01 00:00:00 UTC (8 bytes big-endian, as
//! PostgreSQL sends a `timestamptz`), a uuid its 16 bytes, a text its UTF-8 bytes. The migration
//! `00000000000007_audit_chain` computes the same in SQL; [`AuditRecord::hash`] is this crate's
//! own implementation, so [`verify`] does not trust any function in the database.
//!
//! Changing a row, deleting one, or inserting one with the triggers disabled (which only a
//! superuser or the tables' owner can do) leaves a chain that no longer verifies. Whoever can do
//! that can also recompute every later link: compare the head with one recorded elsewhere (the
//! Owner dashboard shows it) to notice a rewritten chain.

use chrono::{DateTime, Utc};
use diesel::{ExpressionMethods, NullableExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::TryStreamExt;
use ring::digest::{Context, SHA256};
use uuid::Uuid;

use crate::schema::tables::{audit_log, audit_log_chain, audit_log_chain_head};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first link.
pub const GENESIS: Hash = [0; 32];

/// Separates this encoding from any other use of SHA-256 (and versions it).
const DOMAIN: &[u8] = b"tenantry audit_log v1";

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How many breaks [`verify`] keeps (it counts them all).
const KEPT_BREAKS: usize = 100;

/// The content of one `audit_log` row, as the chain hashes it.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable)]
pub struct AuditRecord {
    /// `audit_log.id`.
    pub id: i64,
    /// `audit_log.at`.
    pub at: DateTime<Utc>,
    /// `audit_log.actor_user_id`.
    pub actor_user_id: Option<Uuid>,
    /// `audit_log.actor_email`.
    pub actor_email: String,
    /// `audit_log.action`.
    pub action: String,
    /// `audit_log.reason`.
    pub reason: String,
    /// `audit_log.tenant_id`.
    pub tenant_id: Option<Uuid>,
    /// `audit_log.request_id`.
    pub request_id: Option<String>,
    /// `audit_log.location`.
    pub location: Option<String>,
}

impl AuditRecord {
    /// The hash of this row's link, given the previous link's hash (see the module's docs).
    pub fn hash(&self, prev_hash: &[u8]) -> Hash {
        let mut ctx = Context::new(&SHA256);
        ctx.update(DOMAIN);
        ctx.update(prev_hash);
        let at = self.at.timestamp_micros() - PG_EPOCH_MICROS;
        let fields: [Option<&[u8]>; 9] = [
            Some(&self.id.to_be_bytes()),
            Some(&at.to_be_bytes()),
            self.actor_user_id.as_ref().map(|u| u.as_bytes().as_slice()),
            Some(self.actor_email.as_bytes()),
            Some(self.action.as_bytes()),
            Some(self.reason.as_bytes()),
            self.tenant_id.as_ref().map(|u| u.as_bytes().as_slice()),
            self.request_id.as_deref().map(str::as_bytes),
            self.location.as_deref().map(str::as_bytes),
        ];
        for field in fields {
            match field {
                None => ctx.update(&[0]),
                Some(bytes) => {
                    let len = u32::try_from(bytes.len()).expect("a field fits PostgreSQL's 1 GB");
                    ctx.update(&[1]);
                    ctx.update(&len.to_be_bytes());
                    ctx.update(bytes);
                }
            }
        }
        ctx.finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }
}

/// The chain's last link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// How many rows the chain links (its last position).
    pub rows: i64,
    /// The last linked `audit_log` row (none while the log is empty).
    pub audit_id: Option<i64>,
    /// Its hash ([`GENESIS`] while the log is empty).
    pub hash: Vec<u8>,
}

impl ChainHead {
    /// The hash in lowercase hex.
    pub fn hex(&self) -> String {
        hex(&self.hash)
    }

    /// The first 12 hex digits of the hash, enough to compare by eye.
    pub fn short(&self) -> String {
        let mut h = self.hex();
        h.truncate(12);
        h
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The head as recorded in `audit_log_chain_head` (`None` if its row is gone). A transaction's
/// own audit rows are linked when it commits: inside a bypass, the head is the one before it.
///
/// Needs `SELECT` on `audit_log_chain_head`: the bypass role (in [`crate::db::Db::bypass`], pass
/// `conn.diesel()`) or the tables' owner.
pub async fn head(conn: &AsyncPgConnection) -> diesel::QueryResult<Option<ChainHead>> {
    let mut c = conn;
    let row: Option<(i64, Option<i64>, Vec<u8>)> = audit_log_chain_head::table
        .select((
            audit_log_chain_head::seq,
            audit_log_chain_head::audit_id,
            audit_log_chain_head::hash,
        ))
        .first(&mut c)
        .await
        .optional()?;
    Ok(row.map(|(rows, audit_id, hash)| ChainHead {
        rows,
        audit_id,
        hash,
    }))
}

/// One way the stored chain differs from the one recomputed from the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The row's content no longer hashes to its link's hash: it was changed after it was
    /// written.
    ContentChanged {
        /// The row.
        id: i64,
        /// Its position in the chain.
        seq: i64,
    },
    /// The link names a row that no longer exists: the row was deleted.
    RowDeleted {
        /// The deleted row's id.
        id: i64,
        /// Its position in the chain.
        seq: i64,
    },
    /// Positions are missing before this link: rows were deleted together with their links.
    LinksMissing {
        /// The first row after the gap.
        id: i64,
        /// The first missing position.
        from: i64,
        /// The last missing position.
        to: i64,
    },
    /// The link's `prev_hash` is not the previous link's hash: a link was rewritten.
    LinkRewritten {
        /// The row whose link does not continue the chain.
        id: i64,
        /// Its position.
        seq: i64,
        /// The row of the previous position.
        previous_id: i64,
    },
    /// The row has no link: it was inserted with the triggers disabled, or its link deleted.
    OutOfChain {
        /// The row.
        id: i64,
    },
    /// `audit_log_chain_head` does not name the chain's last link: links at the end were
    /// deleted, or the head was rewritten or deleted.
    HeadMismatch {
        /// The head's position and row (`None` when the head row is gone).
        head: Option<(i64, Option<i64>)>,
        /// The last link's position and row (`(0, None)` when there is none).
        last: (i64, Option<i64>),
    },
}

impl ChainBreak {
    /// The row the break is found at, if it names one.
    pub fn row(&self) -> Option<i64> {
        match self {
            ChainBreak::ContentChanged { id, .. }
            | ChainBreak::RowDeleted { id, .. }
            | ChainBreak::LinksMissing { id, .. }
            | ChainBreak::LinkRewritten { id, .. }
            | ChainBreak::OutOfChain { id } => Some(*id),
            ChainBreak::HeadMismatch { head, .. } => head.and_then(|(_, id)| id),
        }
    }
}

fn row_name(id: Option<i64>) -> String {
    id.map_or_else(|| "no row".to_owned(), |id| format!("row {id}"))
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::ContentChanged { id, seq } => write!(
                f,
                "row {id} (chain position {seq}): content changed since it was written (it no \
                 longer matches its hash)"
            ),
            ChainBreak::RowDeleted { id, seq } => write!(
                f,
                "row {id} (chain position {seq}): deleted (its link remains)"
            ),
            ChainBreak::LinksMissing { id, from, to } if from == to => write!(
                f,
                "row {id}: chain position {from} before it is missing (a row deleted with its link)"
            ),
            ChainBreak::LinksMissing { id, from, to } => write!(
                f,
                "row {id}: chain positions {from} to {to} before it are missing (rows deleted with \
                 their links)"
            ),
            ChainBreak::LinkRewritten {
                id,
                seq,
                previous_id,
            } => write!(
                f,
                "row {id} (chain position {seq}): its link does not continue from row \
                 {previous_id} (a link was rewritten)"
            ),
            ChainBreak::OutOfChain { id } => write!(
                f,
                "row {id}: inserted out of chain (it has no link: written with the triggers \
                 disabled, or its link deleted)"
            ),
            ChainBreak::HeadMismatch { head: None, last } => write!(
                f,
                "the chain's head row (audit_log_chain_head) is gone; the last link is position \
                 {} ({})",
                last.0,
                row_name(last.1)
            ),
            ChainBreak::HeadMismatch {
                head: Some(head),
                last,
            } => write!(
                f,
                "{}: the chain's head names position {} but the last link is position {} ({}): \
                 links at the end were deleted, or the head was rewritten",
                row_name(head.1),
                head.0,
                last.0,
                row_name(last.1)
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The chain as recomputed: how many links, the last row and its stored hash.
    pub head: ChainHead,
    /// The breaks, in chain order, then the rows out of chain by id, then the head: the first
    /// is the first broken row. At most 100 are kept.
    pub breaks: Vec<ChainBreak>,
    /// How many breaks there are in all.
    pub total_breaks: u64,
}

impl Verification {
    /// Whether the chain verifies: no break.
    pub fn is_intact(&self) -> bool {
        self.total_breaks == 0
    }
}

#[derive(Default)]
struct Found {
    breaks: Vec<ChainBreak>,
    total: u64,
}

impl Found {
    fn push(&mut self, b: ChainBreak) {
        self.total += 1;
        if self.breaks.len() < KEPT_BREAKS {
            self.breaks.push(b);
        }
    }
}

type LinkRow = (i64, i64, Vec<u8>, Vec<u8>, Option<AuditRecord>);

/// Recomputes the chain from the rows and compares it with the stored links and head.
///
/// Reads `audit_log`, `audit_log_chain` and `audit_log_chain_head` (the tables' owner or the
/// bypass role), streaming the rows. Consistent while audit rows commit concurrently: it reads
/// the head first and the chain up to it; run it in a `REPEATABLE READ` transaction to check a
/// single snapshot (`tenantry audit --verify` does).
pub async fn verify(conn: &AsyncPgConnection) -> diesel::QueryResult<Verification> {
    let recorded = head(conn).await?;
    let mut found = Found::default();
    let limit = recorded.as_ref().map_or(i64::MAX, |h| h.rows);
    let last = check_links(conn, limit, &mut found).await?;
    check_unlinked(conn, &mut found).await?;
    if !matches!(&recorded, Some(h) if *h == last) {
        found.push(ChainBreak::HeadMismatch {
            head: recorded.as_ref().map(|h| (h.rows, h.audit_id)),
            last: (last.rows, last.audit_id),
        });
    }
    Ok(Verification {
        head: last,
        breaks: found.breaks,
        total_breaks: found.total,
    })
}

/// Walks the links up to position `limit` in order, recomputing each row's hash; returns the
/// last link.
async fn check_links(
    conn: &AsyncPgConnection,
    limit: i64,
    found: &mut Found,
) -> diesel::QueryResult<ChainHead> {
    let mut c = conn;
    let links = audit_log_chain::table
        .left_join(audit_log::table)
        .filter(audit_log_chain::seq.le(limit))
        .order(audit_log_chain::seq)
        .select((
            audit_log_chain::seq,
            audit_log_chain::audit_id,
            audit_log_chain::prev_hash,
            audit_log_chain::hash,
            (
                audit_log::id,
                audit_log::at,
                audit_log::actor_user_id,
                audit_log::actor_email,
                audit_log::action,
                audit_log::reason,
                audit_log::tenant_id,
                audit_log::request_id,
                audit_log::location,
            )
                .nullable(),
        ))
        .load_stream::<LinkRow>(&mut c)
        .await?;
    futures_util::pin_mut!(links);
    let mut last = ChainHead {
        rows: 0,
        audit_id: None,
        hash: GENESIS.to_vec(),
    };
    while let Some((seq, audit_id, prev_hash, hash, row)) = links.try_next().await? {
        let expected = last.rows + 1;
        if seq != expected {
            found.push(ChainBreak::LinksMissing {
                id: audit_id,
                from: expected,
                to: seq - 1,
            });
        } else if prev_hash != last.hash {
            found.push(ChainBreak::LinkRewritten {
                id: audit_id,
                seq,
                previous_id: last.audit_id.unwrap_or_default(),
            });
        }
        // Against the link's own prev_hash: one changed row is one break, not a cascade.
        match row {
            None => found.push(ChainBreak::RowDeleted { id: audit_id, seq }),
            Some(row) if row.hash(&prev_hash).as_slice() != hash.as_slice() => {
                found.push(ChainBreak::ContentChanged { id: audit_id, seq })
            }
            Some(_) => {}
        }
        last = ChainHead {
            rows: seq,
            audit_id: Some(audit_id),
            hash,
        };
    }
    Ok(last)
}

/// Rows without a link, by id.
async fn check_unlinked(conn: &AsyncPgConnection, found: &mut Found) -> diesel::QueryResult<()> {
    let mut c = conn;
    let linked = audit_log_chain::table
        .filter(audit_log_chain::audit_id.eq(audit_log::id))
        .select(audit_log_chain::seq);
    let unlinked = audit_log::table
        .filter(diesel::dsl::not(diesel::dsl::exists(linked)))
        .order(audit_log::id)
        .select(audit_log::id)
        .load_stream::<i64>(&mut c)
        .await?;
    futures_util::pin_mut!(unlinked);
    while let Some(id) = unlinked.try_next().await? {
        found.push(ChainBreak::OutOfChain { id });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
