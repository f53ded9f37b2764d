//! The hardening `tenantry doctor` expects and tenantry's migrations do not apply yet, for tests
//! of a database set up properly.

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

/// What a properly set up database has and tenantry's migrations do not give it yet (the work
/// that does is under way; delete each statement once a migration applies it):
///
/// - `PUBLIC` (and so the app and bypass roles) may not create temporary tables in the database;
/// - `tenantry_app` may not run the directory's `SECURITY DEFINER` lookups
///   (`tenantry_principal`, `tenantry_owner_tenant`, `tenantry_record_sub`), which belong to a
///   directory role of their own.
///
/// Run it as a superuser or the migration role; on a database tenantry has not migrated, only
/// the first applies.
pub async fn apply_pending_hardening(conn: &mut AsyncPgConnection) {
    conn.batch_execute(PENDING_HARDENING_SQL)
        .await
        .unwrap_or_else(|e| panic!("the pending hardening: {e}"));
}

const PENDING_HARDENING_SQL: &str = r#"
DO $$
DECLARE f text;
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    FOREACH f IN ARRAY ARRAY['tenantry_principal(text)', 'tenantry_principal(text, text)',
                             'tenantry_owner_tenant(uuid, text)', 'tenantry_record_sub(uuid, text)']
    LOOP
        IF to_regprocedure(f) IS NOT NULL THEN
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM tenantry_app', f);
        END IF;
    END LOOP;
END $$;
"#;
