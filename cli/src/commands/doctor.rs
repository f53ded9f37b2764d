//! `tenantry doctor`: report tenant-isolation gaps found by `tenantry::doctor::inspect`, and with
//! `--citus` what keeps the schema from being sharded by tenant (`tenantry::citus::check`).

use std::io::Write;

use diesel_async::AsyncPgConnection;
use tenantry::doctor::{Finding, Report};

use crate::error::CliError;

/// Inspects the database, prints an `ok` line per passed check and a `FAIL` line per finding.
pub(super) async fn run(
    conn: &mut AsyncPgConnection,
    app_role: &str,
    bypass_role: &str,
    citus: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let report = tenantry::doctor::inspect_roles(conn, app_role, bypass_role).await?;
    print_report(&report, app_role, out)?;
    let mut problems = report.findings.len();
    if citus && migrated(&report) {
        let mut citus = tenantry::citus::check(conn).await?;
        citus
            .findings
            .extend(tenantry::citus::check_app_role(conn, app_role).await?);
        print_citus(&citus.findings, out)?;
        problems += citus.findings.len();
    }
    if problems == 0 {
        Ok(())
    } else {
        Err(CliError::Findings(problems))
    }
}

/// Whether tenantry's migrations are applied in this build's schema (`TENANTRY_SCHEMA`).
fn migrated(report: &Report) -> bool {
    !report
        .findings
        .iter()
        .any(|f| matches!(f, Finding::NotMigrated | Finding::OtherSchema { .. }))
}

/// The Citus section: one `FAIL` line per broken rule, or one `ok` line.
pub(super) fn print_citus(
    findings: &[tenantry::citus::CitusFinding],
    out: &mut impl Write,
) -> Result<(), CliError> {
    if findings.is_empty() {
        writeln!(
            out,
            "ok    citus: every tenant table's keys and foreign keys carry its tenant column; \
             global tables reference only global tables; no policy with a subquery or trigger of \
             the application's own on a table to distribute or replicate"
        )?;
    }
    for finding in findings {
        writeln!(out, "FAIL  citus: {finding}")?;
    }
    Ok(())
}

fn print_report(report: &Report, app_role: &str, out: &mut impl Write) -> Result<(), CliError> {
    let not_migrated = !migrated(report);
    if !not_migrated {
        writeln!(
            out,
            "ok    tenantry's migrations are applied (schema {})",
            tenantry::schema::NAME
        )?;
        for table in &report.tenant_tables {
            if !report.findings.iter().any(|f| table_of(f) == Some(table)) {
                writeln!(
                    out,
                    "ok    {table}: row-level security enabled and forced, tenant policy, \
                     index on the tenant column"
                )?;
            }
        }
        if !report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::UndeclaredTenantColumn { .. }))
        {
            writeln!(
                out,
                "ok    every other table with a tenant_id column is declared"
            )?;
        }
        if !report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::TenantReferenceWithoutPolicy { .. }))
        {
            writeln!(
                out,
                "ok    every table with a foreign key to tenants has row-level security"
            )?;
        }
    }
    if !report.directory_tables.is_empty()
        && !report
            .findings
            .iter()
            .any(|f| table_of(f).is_some_and(|t| report.directory_tables.contains(t)))
    {
        writeln!(
            out,
            "ok    directory ({}): row-level security enabled, exactly tenantry's policies, \
             no other permissive policy",
            report.directory_tables.join(", ")
        )?;
    }
    if !report.findings.iter().any(|f| {
        matches!(
            f,
            Finding::AppRoleMissing { .. } | Finding::AppRolePrivileged { .. }
        )
    }) {
        writeln!(
            out,
            "ok    role {app_role} is neither superuser nor BYPASSRLS"
        )?;
    }
    if !report.roles.is_empty() {
        let roles = report.roles.join(", ");
        if !report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::RoleOwns { .. } | Finding::RoleEscalates { .. }))
        {
            writeln!(
                out,
                "ok    {roles}: own nothing, and are members of no role that escapes \
                 row-level security or owns a tenant table"
            )?;
        }
        if !report.findings.iter().any(|f| {
            matches!(
                f,
                Finding::TempAllowed { .. } | Finding::CreateAllowed { .. }
            )
        }) {
            writeln!(
                out,
                "ok    {roles}: create neither temporary tables nor objects in any schema"
            )?;
        }
    }
    if !not_migrated
        && !report.findings.iter().any(|f| {
            matches!(
                f,
                Finding::DefinerExecutable { .. } | Finding::DefinerSearchPath { .. }
            )
        })
    {
        writeln!(
            out,
            "ok    SECURITY DEFINER functions: executable only by the roles tenantry grants \
             them to, search_path pinned with pg_temp last"
        )?;
    }
    for finding in &report.findings {
        writeln!(out, "FAIL  {finding}")?;
    }

    let n = report.tenant_tables.len();
    let tables = if n == 0 {
        "none declared".to_owned()
    } else {
        report.tenant_tables.join(", ")
    };
    writeln!(
        out,
        "checked {n} tenant table{} ({tables}) and role {app_role}: {}",
        if n == 1 { "" } else { "s" },
        match report.findings.len() {
            0 => "no problems".to_owned(),
            1 => "1 problem".to_owned(),
            k => format!("{k} problems"),
        }
    )?;
    Ok(())
}

/// The declared tenant table or directory table a finding is about, if any.
fn table_of(finding: &Finding) -> Option<&String> {
    match finding {
        Finding::DeclaredTableMissing { table }
        | Finding::RlsNotEnabled { table }
        | Finding::RlsNotForced { table }
        | Finding::PolicyMissing { table }
        | Finding::PolicyDiffers { table, .. }
        | Finding::DirectoryPolicyMissing { table, .. }
        | Finding::DirectoryPolicyDiffers { table, .. }
        | Finding::TenantIndexMissing { table, .. }
        | Finding::ExtraPermissivePolicy { table, .. } => Some(table),
        Finding::UndeclaredTenantColumn { .. }
        | Finding::TenantReferenceWithoutPolicy { .. }
        | Finding::AppRoleMissing { .. }
        | Finding::AppRolePrivileged { .. }
        | Finding::RoleOwns { .. }
        | Finding::RoleEscalates { .. }
        | Finding::TempAllowed { .. }
        | Finding::CreateAllowed { .. }
        | Finding::DefinerExecutable { .. }
        | Finding::DefinerSearchPath { .. }
        | Finding::NotMigrated
        | Finding::OtherSchema { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(report: &Report) -> String {
        let mut out = Vec::new();
        print_report(report, "tenantry_app", &mut out).expect("written");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_sound_database_prints_ok_lines() {
        let report = Report {
            tenant_tables: vec!["public.notes".into()],
            ..Report::default()
        };
        let text = printed(&report);
        assert!(text.contains("ok    public.notes:"), "{text}");
        assert!(text.contains("no problems"), "{text}");
        assert!(!text.contains("FAIL"), "{text}");
    }

    #[test]
    fn findings_replace_the_ok_line_of_their_table() {
        let report = Report {
            tenant_tables: vec!["public.notes".into(), "public.tasks".into()],
            findings: vec![Finding::RlsNotEnabled {
                table: "public.notes".into(),
            }],
            ..Report::default()
        };
        let text = printed(&report);
        assert!(!text.contains("ok    public.notes"), "{text}");
        assert!(text.contains("ok    public.tasks"), "{text}");
        assert!(
            text.contains("FAIL  public.notes: row-level security is not enabled"),
            "{text}"
        );
        assert!(text.contains("1 problem"), "{text}");
    }
}
