//! The tenant seal: a transaction's tenant that no SQL can change.
//!
//! Row-level security compares every tenant table's rows with the verified tenant of the
//! transaction (`tenantry_current_tenant`, migration `0005_tenant_seal`): the setting
//! `tenantry.tenant` counts only when it carries an HMAC over the tenant, the server backend and
//! the transaction's start, under a key the app role cannot read. Only `tenantry_enter` writes such
//! a value, and only for a caller that proves it holds the key: an HMAC of the tenant, the
//! read-only flag and the time, sent as bind parameters. This module holds the keys (read at start
//! through the directory role), signs entries, and writes the two statements of the seal as
//! protocol messages for the socket to splice in (`pool/splice.rs`):
//!
//! - the entry, `SELECT tenantry_enter($1, $2, $3, $4, $5)`, first in the transaction;
//! - the assertion, `SELECT (<verified tenant> IS NOT DISTINCT FROM $1)::tenantry_tenant_check`,
//!   last: if the verified tenant is not the one entered, the cast fails (constraint
//!   `tenantry_tenant_moved`) and the transaction rolls back.
//!
//! Straight to PostgreSQL both are prepared once per connection (named statements); behind a
//! transaction pooler they are parsed with each use (unnamed), since a named statement would not
//! outlive the transaction.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use diesel::sql_types::{Binary, Integer};
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use ring::hmac;
use uuid::Uuid;

use crate::pool::{Anchor, Outcome, ServerError};

/// The entry, prepared per connection (see the module docs).
pub(crate) const ENTER_SQL: &str = concat!(
    "SELECT ",
    schema_name!(),
    ".tenantry_enter($1, $2, $3, $4, $5)"
);
/// The assertion.
pub(crate) const ASSERT_SQL: &str = concat!(
    "SELECT ((SELECT tenant_id FROM ",
    schema_name!(),
    ".tenantry_current_tenant) IS NOT DISTINCT FROM $1)::",
    schema_name!(),
    ".tenantry_tenant_check"
);
/// Parameter types of [`ENTER_SQL`]: uuid, bool, int8, int4, bytea.
pub(crate) const ENTER_TYPES: [tokio_postgres::types::Type; 5] = [
    tokio_postgres::types::Type::UUID,
    tokio_postgres::types::Type::BOOL,
    tokio_postgres::types::Type::INT8,
    tokio_postgres::types::Type::INT4,
    tokio_postgres::types::Type::BYTEA,
];
/// Parameter types of [`ASSERT_SQL`]: uuid.
pub(crate) const ASSERT_TYPES: [tokio_postgres::types::Type; 1] =
    [tokio_postgres::types::Type::UUID];

/// The constraint whose violation means the transaction's tenant moved.
const MOVED: &str = "tenantry_tenant_moved";

/// Domain separation of the entry's proof (the server checks the same bytes).
const ENTER_CONTEXT: &[u8] = b"tenantry-enter-v1";

/// How a connection names the seal's statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealStatements {
    /// Prepared on the connection at its start (straight to PostgreSQL) as
    /// [`ENTER_NAME`] and [`ASSERT_NAME`].
    Named,
    /// Parsed with each use, unnamed (behind a transaction pooler).
    Unnamed,
}

/// The entry's statement name on a connection that prepared it (tokio-postgres names its own
/// `s0`, `s1`, ..).
pub(crate) const ENTER_NAME: &str = "tenantry_enter";
/// The assertion's statement name.
pub(crate) const ASSERT_NAME: &str = "tenantry_assert";

/// The request that prepares both statements on a new connection: two `Parse`s and a `Sync`.
pub(crate) fn prepare_request() -> Anchor {
    let mut buf = BytesMut::with_capacity(256);
    frontend::parse(
        ENTER_NAME,
        ENTER_SQL,
        ENTER_TYPES.iter().map(|t| t.oid()),
        &mut buf,
    )
    .expect("a statement without NUL bytes");
    frontend::parse(
        ASSERT_NAME,
        ASSERT_SQL,
        ASSERT_TYPES.iter().map(|t| t.oid()),
        &mut buf,
    )
    .expect("a statement without NUL bytes");
    frontend::sync(&mut buf);
    Anchor::BeforeQuery(buf.to_vec())
}

/// The keys this process signs entries with: the database's unexpired keys, newest first.
#[derive(Debug)]
pub(crate) struct TenantKeys {
    keys: RwLock<Arc<KeySet>>,
}

#[derive(Debug)]
struct KeySet {
    /// `(id, key)`, newest first.
    keys: Vec<(i32, hmac::Key)>,
}

/// One row of `tenantry_tenant_keys()`.
#[derive(Debug, Clone, diesel::QueryableByName)]
pub(crate) struct KeyRow {
    #[diesel(sql_type = Integer)]
    pub(crate) id: i32,
    #[diesel(sql_type = Binary)]
    pub(crate) key: Vec<u8>,
}

impl TenantKeys {
    /// The keys of `rows` (as `tenantry_tenant_keys()` returns them); an error if there is none.
    #[cfg(test)]
    fn new(rows: Vec<KeyRow>) -> Result<Self, String> {
        Ok(TenantKeys {
            keys: RwLock::new(Arc::new(KeySet::from_rows(rows)?)),
        })
    }

    /// No keys yet: entries carry key id -1 and no proof, which the database refuses.
    pub(crate) fn empty() -> Self {
        TenantKeys {
            keys: RwLock::new(Arc::new(KeySet { keys: Vec::new() })),
        }
    }

    /// Replaces the keys with a fresh read.
    pub(crate) fn replace(&self, rows: Vec<KeyRow>) -> Result<(), String> {
        let set = KeySet::from_rows(rows)?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(())
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The entry of a transaction in `tenant`, signed with the newest key, at the current time.
    pub(crate) fn entry(&self, tenant: Uuid, read_only: bool) -> Entry {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.entry_at(tenant, read_only, at)
    }

    fn entry_at(&self, tenant: Uuid, read_only: bool, at: i64) -> Entry {
        let set = self.current();
        let Some((key_id, key)) = set.keys.first() else {
            return Entry {
                tenant,
                read_only,
                at,
                key_id: -1,
                proof: [0; 32],
            };
        };
        let mut message = Vec::with_capacity(ENTER_CONTEXT.len() + 16 + 1 + 8);
        message.extend_from_slice(ENTER_CONTEXT);
        message.extend_from_slice(tenant.as_bytes());
        message.push(u8::from(read_only));
        message.extend_from_slice(&at.to_be_bytes());
        let tag = hmac::sign(key, &message);
        let mut proof = [0u8; 32];
        proof.copy_from_slice(tag.as_ref());
        Entry {
            tenant,
            read_only,
            at,
            key_id: *key_id,
            proof,
        }
    }
}

impl KeySet {
    fn from_rows(mut rows: Vec<KeyRow>) -> Result<Self, String> {
        rows.sort_by_key(|r| std::cmp::Reverse(r.id));
        let keys: Vec<_> = rows
            .into_iter()
            .filter(|r| r.key.len() == 32)
            .map(|r| (r.id, hmac::Key::new(hmac::HMAC_SHA256, &r.key)))
            .collect();
        if keys.is_empty() {
            return Err(concat!(
                "the database has no tenant key (tenantry_tenant_keys is empty): run tenantry's \
                 migrations, or `SELECT ",
                schema_name!(),
                ".tenantry_rotate_tenant_key()` as the tables' owner"
            )
            .into());
        }
        Ok(KeySet { keys })
    }
}

/// A signed entry into one tenant.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    tenant: Uuid,
    read_only: bool,
    at: i64,
    key_id: i32,
    proof: [u8; 32],
}

impl Entry {
    /// `Bind` (and `Parse` first, unnamed) and `Execute` of the entry.
    fn write_enter(&self, statements: &SealStatements, buf: &mut BytesMut) {
        let name = match statements {
            SealStatements::Named => ENTER_NAME,
            SealStatements::Unnamed => {
                parse(ENTER_SQL, &ENTER_TYPES, buf);
                ""
            }
        };
        let read_only = [u8::from(self.read_only)];
        let at = self.at.to_be_bytes();
        let key = self.key_id.to_be_bytes();
        let values: [&[u8]; 5] = [self.tenant.as_bytes(), &read_only, &at, &key, &self.proof];
        bind(name, &values, buf);
        execute(buf);
    }

    /// The entry as a request of its own (ending with `Sync`), to follow `BEGIN`.
    pub(crate) fn request(&self, statements: &SealStatements) -> Anchor {
        let mut buf = BytesMut::with_capacity(160);
        self.write_enter(statements, &mut buf);
        frontend::sync(&mut buf);
        Anchor::AfterQuery(buf.to_vec())
    }

    /// The entry and the assertion around one statement, in its implicit transaction (named
    /// statements only).
    pub(crate) fn around(&self, statements: &SealStatements) -> Anchor {
        let mut prefix = BytesMut::with_capacity(128);
        self.write_enter(statements, &mut prefix);
        let mut suffix = BytesMut::with_capacity(64);
        write_assert(self.tenant, statements, &mut suffix);
        Anchor::AroundStatement {
            prefix: prefix.to_vec(),
            suffix: suffix.to_vec(),
            parts: 1,
        }
    }

    /// [`Entry::around`] in a transaction block: `BEGIN` and the entry before the statement, the
    /// assertion and `COMMIT` after it, still before the statement's one `Sync` (one round trip).
    /// For Citus, which sends the seal's `SET LOCAL` to the workers only inside a transaction
    /// block, never in an implicit transaction.
    pub(crate) fn around_block(&self, statements: &SealStatements) -> Anchor {
        let mut prefix = BytesMut::with_capacity(160);
        write_simple("BEGIN", &mut prefix);
        self.write_enter(statements, &mut prefix);
        let mut suffix = BytesMut::with_capacity(96);
        write_assert(self.tenant, statements, &mut suffix);
        write_simple("COMMIT", &mut suffix);
        Anchor::AroundStatement {
            prefix: prefix.to_vec(),
            suffix: suffix.to_vec(),
            parts: 2,
        }
    }
}

/// The entry as a Diesel statement with bind parameters (for the test kit's raw connections).
#[cfg(feature = "testing")]
pub(crate) struct EnterQuery(pub(crate) Entry);

#[cfg(feature = "testing")]
impl diesel::query_builder::QueryId for EnterQuery {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

#[cfg(feature = "testing")]
impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for EnterQuery {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{BigInt, Binary, Bool, Integer, Uuid as SqlUuid};
        let e = &self.0;
        out.push_sql(concat!("SELECT ", schema_name!(), ".tenantry_enter("));
        out.push_bind_param::<SqlUuid, _>(&e.tenant)?;
        out.push_sql(", ");
        out.push_bind_param::<Bool, _>(&e.read_only)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&e.at)?;
        out.push_sql(", ");
        out.push_bind_param::<Integer, _>(&e.key_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Binary, _>(&e.proof[..])?;
        out.push_sql(")");
        Ok(())
    }
}

/// The assertion as a request of its own, to precede `COMMIT`.
pub(crate) fn assertion(tenant: Uuid, statements: &SealStatements) -> Anchor {
    let mut buf = BytesMut::with_capacity(96);
    write_assert(tenant, statements, &mut buf);
    frontend::sync(&mut buf);
    Anchor::BeforeQuery(buf.to_vec())
}

fn write_assert(tenant: Uuid, statements: &SealStatements, buf: &mut BytesMut) {
    let name = match statements {
        SealStatements::Named => ASSERT_NAME,
        SealStatements::Unnamed => {
            parse(ASSERT_SQL, &ASSERT_TYPES, buf);
            ""
        }
    };
    bind(name, &[tenant.as_bytes()], buf);
    execute(buf);
}

/// `Parse` (unnamed), `Bind` and `Execute` of a statement without parameters.
fn write_simple(sql: &str, buf: &mut BytesMut) {
    parse(sql, &[], buf);
    bind("", &[], buf);
    execute(buf);
}

fn parse(sql: &str, types: &[tokio_postgres::types::Type], buf: &mut BytesMut) {
    frontend::parse("", sql, types.iter().map(|t| t.oid()), buf)
        .expect("a statement without NUL bytes");
}

/// `Bind` of the unnamed portal: every parameter and result in binary.
fn bind(statement: &str, values: &[&[u8]], buf: &mut BytesMut) {
    let result = frontend::bind(
        "",
        statement,
        values.iter().map(|_| 1),
        values.iter().copied(),
        |value, buf| {
            buf.extend_from_slice(value);
            Ok(IsNull::No)
        },
        [1],
        buf,
    );
    // Only a value over 2 GiB or more than 32767 of them can fail.
    assert!(result.is_ok(), "a Bind of a handful of small values");
}

fn execute(buf: &mut BytesMut) {
    frontend::execute("", 0, buf).expect("the unnamed portal");
}

/// A server's error outside the seal (a transaction block's `COMMIT`), as Diesel reports one.
pub(crate) fn server_error(e: ServerError) -> diesel::result::Error {
    use diesel::result::DatabaseErrorKind as Kind;
    let kind = match e.code.as_str() {
        "40001" => Kind::SerializationFailure,
        "23505" => Kind::UniqueViolation,
        "23503" => Kind::ForeignKeyViolation,
        "23514" => Kind::CheckViolation,
        _ => Kind::Unknown,
    };
    diesel::result::Error::DatabaseError(kind, Box::new(e.to_string()))
}

/// Why a transaction's seal did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SealFailure {
    /// The server refused the entry (unknown or expired key, clock, proof).
    Refused(ServerError),
    /// The verified tenant at the end was not the one entered: the transaction rolled back.
    Moved,
    /// The transaction had already failed (an error the work did not return), so the server
    /// rolled it back instead of committing it.
    Aborted,
    /// Another error in the seal's statements (the transaction was already failing, or the
    /// connection broke).
    Other(String),
}

impl std::fmt::Display for SealFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealFailure::Refused(e) => write!(f, "the tenant entry was refused: {e}"),
            SealFailure::Moved => f.write_str("the transaction's tenant moved"),
            SealFailure::Aborted => f.write_str("the transaction had failed"),
            SealFailure::Other(m) => f.write_str(m),
        }
    }
}

/// What the entry's outcome says.
pub(crate) fn entry_failure(outcome: &Outcome) -> Option<SealFailure> {
    if outcome.lost {
        return Some(SealFailure::Other(
            "the connection ended before the tenant entry was answered".into(),
        ));
    }
    outcome.first.clone().map(|e| {
        if e.code == "28000" {
            SealFailure::Refused(e)
        } else {
            SealFailure::Other(format!("the tenant entry failed: {e}"))
        }
    })
}

/// What an assertion's error says.
pub(crate) fn assertion_failure(error: &ServerError) -> SealFailure {
    if error.constraint.as_deref() == Some(MOVED) {
        SealFailure::Moved
    } else if error.code == "25P02" {
        SealFailure::Aborted
    } else {
        SealFailure::Other(format!("the tenant assertion failed: {error}"))
    }
}

/// Whether a refusal means this process's keys are stale (refresh them).
pub(crate) fn stale_key(failure: &SealFailure) -> bool {
    matches!(failure, SealFailure::Refused(e) if e.message.contains("unknown or expired tenant key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TenantKeys {
        TenantKeys::new(vec![
            KeyRow {
                id: 1,
                key: vec![1; 32],
            },
            KeyRow {
                id: 2,
                key: vec![2; 32],
            },
        ])
        .unwrap()
    }

    #[test]
    fn entries_are_signed_with_the_newest_key_over_tenant_flag_and_time() {
        let tenant = Uuid::from_u128(7);
        let e = keys().entry_at(tenant, true, 1_700_000_000);
        assert_eq!(e.key_id, 2);
        let mut m = b"tenantry-enter-v1".to_vec();
        m.extend_from_slice(tenant.as_bytes());
        m.push(1);
        m.extend_from_slice(&1_700_000_000i64.to_be_bytes());
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[2; 32]), &m);
        assert_eq!(&e.proof[..], expected.as_ref());
        assert_ne!(
            keys().entry_at(tenant, false, 1_700_000_000).proof,
            e.proof,
            "the read-only flag is signed"
        );
    }

    #[test]
    fn no_key_is_an_error_that_says_what_to_run() {
        let e = TenantKeys::new(Vec::new()).unwrap_err();
        assert!(e.contains("tenantry_rotate_tenant_key"), "{e}");
    }

    #[test]
    fn requests_are_whole_protocol_messages() {
        let e = keys().entry(Uuid::nil(), false);
        let Anchor::AfterQuery(bytes) = e.request(&SealStatements::Unnamed) else {
            panic!("a request")
        };
        let mut kinds = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            kinds.push(rest[0]);
            rest = &rest[1 + len..];
        }
        assert_eq!(kinds, b"PBES");
    }
}
