//! Which database a [`Db`] reaches, as the server names it: what the `Jobs` capability is counted
//! by (once per process and database, whatever URL leads there).

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

use super::{in_read_only_tx, start_conn, Db, BYPASS_URL};
use crate::error::DbError;

impl Db {
    /// The database's name and the server's system identifier (`pg_control_system()`), read on
    /// the bypass pool; where the server withholds the identifier, the server's address and port
    /// stand in for it.
    #[allow(
        clippy::disallowed_methods,
        reason = "literal catalog reads of the database's identity"
    )]
    pub(crate) async fn database_identity(&self) -> Result<String, DbError> {
        let pool = self.bypass.as_ref().ok_or(DbError::NoBypassPool)?;
        let conn = start_conn(pool, BYPASS_URL, self.pooler).await?;
        let identity = in_read_only_tx(&conn, async |c| {
            diesel::select(diesel::dsl::sql::<Text>(
                "current_database()::text || ' on cluster ' || \
                 (SELECT system_identifier FROM pg_control_system())::text",
            ))
            .get_result::<String>(c)
            .await
        })
        .await;
        match identity {
            Ok(identity) => Ok(identity),
            Err(DbError::Query(_)) => {
                in_read_only_tx(&conn, async |c| {
                    diesel::select(diesel::dsl::sql::<Text>(
                        "current_database()::text || ' on ' || \
                         coalesce(host(inet_server_addr()), 'local') || ':' || \
                         coalesce(inet_server_port()::text, '')",
                    ))
                    .get_result::<String>(c)
                    .await
                })
                .await
            }
            Err(e) => Err(e),
        }
    }
}
