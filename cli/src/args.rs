//! Command-line arguments (clap derive): the commands and their flags.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Parser, Subcommand};
use tenantry::identity::TenantRole;

/// Exit codes, shown at the end of every `--help` (values in [`crate::error::exit`]).
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a check failed (doctor found problems, audit --verify a broken chain)
  2  bad usage or configuration (a flag, an argument value, DATABASE_URL)
  3  the database is unreachable or refused the connection
  4  something needed does not exist (a tenant, tenantry's tables: run `tenantry migrate`)
  5  a statement or migration failed in the database";

/// The top-level `--help`: what the command does, its database, and the schema of tenantry's
/// objects this build works with (`TENANTRY_SCHEMA` when tenantry was built).
fn long_about() -> String {
    format!(
        "Manage a tenantry database: apply tenantry's migrations, create tenants and users, \
         read the audit log and check that tenant isolation (row-level security) is in \
         place.\n\n\
         Every command connects with DATABASE_URL (or --database-url): a role that may create \
         tables and roles (no default).\n\n\
         tenantry's tables, functions and views are in the schema `{schema}` (TENANTRY_SCHEMA \
         when this command was built; the application must be built with the same).",
        schema = tenantry::schema::NAME
    )
}

/// The `tenantry` command line.
#[derive(Debug, Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Manage a tenantry database: migrations, tenants, users, audit log, isolation checks",
    long_about = long_about(),
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub(crate) struct Cli {
    /// PostgreSQL URL of the migration/owner role [env: DATABASE_URL] (required: no default)
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) database_url: Option<String>,

    /// The command to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Apply tenantry's own migrations, create its roles and grant them; safe to run again
    #[command(
        long_about = "Apply tenantry's own migrations (tenants, users, memberships, audit_log, in \
                      tenantry's schema, beside an application's own tables: see `tenantry \
                      --help`), \
                      create the roles tenantry_app and tenantry_bypass if missing and grant \
                      them what they need. Safe to run again: prints what was applied, or \
                      \"already up to date\".",
        after_help = EXIT_CODES
    )]
    Migrate,

    /// Create a tenant (idempotent by slug); prints its id and slug
    #[command(
        long_about = "Create a tenant. The slug is derived from the name when --slug is not \
                      given (lowercase ASCII letters and digits, every other run of characters \
                      becomes one '-'). Running it again with an existing slug changes nothing \
                      and says so. Prints the tenant's id and slug in both cases.",
        after_help = EXIT_CODES
    )]
    SeedTenant(SeedTenantArgs),

    /// Create a user (or a service token's identity) if needed and grant it Owner or a role in
    /// one tenant
    #[command(
        long_about = "Create a user if needed (emails are unique case-insensitively), or with \
                      --service-token the identity of a Cloudflare Access service token (its \
                      client id, <id>.access), and grant it either the global Owner role \
                      (--owner) or a role in one tenant (--tenant SLUG --role \
                      partner|client-viewer). Running it again changes nothing and says so; a \
                      different --role for the same tenant replaces the previous one.",
        after_help = EXIT_CODES
    )]
    AddUser(AddUserArgs),

    /// Print the newest audit log rows as a table, or check the log's hash chain (--verify)
    #[command(
        long_about = "Print the newest audit log rows as a table, newest first.\n\n\
                      With --verify, recompute the audit log's hash chain instead (each row's \
                      SHA-256 over its content and the previous row's hash, linked in commit \
                      order) from one snapshot: prints the row count and the head (the last \
                      row's id and hash) when it is intact; otherwise prints every break (a row \
                      whose content changed, a deleted row, a row inserted out of chain, a \
                      rewritten link or head) and exits 1 naming the first broken row.",
        after_help = EXIT_CODES
    )]
    Audit(AuditArgs),

    /// Check tenant isolation (and, with --citus, readiness for Citus); prints each finding and exits 1 on any
    #[command(
        long_about = "Check the database: every declared tenant table has row-level security \
                      enabled and forced, exactly the policy tenantry_declare_tenant_table \
                      generates (no other permissive policy) and an index leading with its \
                      tenant column; the directory (tenants, users, memberships) has exactly \
                      tenantry's policies; every other table with a tenant_id column is declared \
                      global; the app role (the user of TENANTRY_APP_DATABASE_URL, default \
                      tenantry_app) is neither superuser nor BYPASSRLS; neither it nor the \
                      bypass role (the user of TENANTRY_BYPASS_DATABASE_URL, default \
                      tenantry_bypass) owns anything, is a member of a role that escapes \
                      row-level security or owns a tenant table, or may create temporary tables \
                      or objects in a schema; tenantry's SECURITY DEFINER functions are \
                      executable only by the roles tenantry grants them to and pin a search_path \
                      ending with pg_temp. Run it as the migration role (DATABASE_URL). Prints an \
                      \"ok\" line per passed check and one line per finding; exits 1 when \
                      anything was found.\n\n\
                      With --citus, also checks the schema against Citus's rules for sharding by \
                      tenant: each tenant table's primary key, unique constraints and unique \
                      indexes include its tenant column, foreign keys between tenant tables pair \
                      their tenant columns, global tables (reference tables on Citus) \
                      reference only global tables, no policy has a subquery and no trigger of \
                      the application's own sits on a table to distribute or replicate, and, \
                      once Citus places tables, the app role has \
                      citus.propagate_set_commands = 'local'. Each violation names its table \
                      and constraint, or the role.",
        after_help = EXIT_CODES
    )]
    Doctor(DoctorArgs),

    /// Print the DDL that shards this database with Citus, in dependency order
    #[command(
        long_about = "Print, for the Citus coordinator, one transaction that turns this \
                      database's tables into Citus tables and applies as printed (psql -v \
                      ON_ERROR_STOP=1 -f): the app role's citus.propagate_set_commands so that \
                      the tenant seal reaches the workers, tenantry_citus_prepare() (the seal, \
                      policies and notifications for Citus), the functions that run commands on \
                      other nodes revoked on the workers, the tenant tables' foreign keys dropped \
                      and put back around the placements, then in dependency order \
                      create_reference_table for global tables, tenantry's directory and the \
                      seal's keys, citus_add_local_table_to_metadata for audit_log, and \
                      create_distributed_table(.., 'tenant_id', colocate_with => ..) for tenant \
                      tables; tables already placed are skipped. The database must exist on \
                      every node first. Refuses (exit 1) while `tenantry doctor --citus` finds \
                      problems.",
        after_help = EXIT_CODES
    )]
    CitusPlan,

    /// Add a tenant key and let the older ones expire after a grace period
    #[command(
        long_about = "Add a key of the tenant seal (the secret under which a tenant transaction's \
                      entry is signed and its tenant sealed; see the README's \"The tenant \
                      seal\") and let every older key expire after --grace. Running \
                      applications read the keys every 30 s and sign with the newest, so the \
                      grace must cover that (the default, 1h, does). Run it as the tables' owner \
                      (DATABASE_URL): after a suspected leak of the old key, with --grace 0s \
                      (entries signed with it are refused at once; each instance reads the new \
                      key on its first refusal). Prints the new key's id.",
        after_help = EXIT_CODES
    )]
    RotateTenantKey(RotateTenantKeyArgs),

    /// Show the busiest tenants by database time and sheds over the last minutes, from a
    /// running instance's metrics endpoint
    #[command(
        long_about = "Show the busiest tenants of a running instance over the last minute or five: \
                      seconds their transactions held a database connection, requests refused \
                      with 429 (sheds: over their share of the pool or over their concurrent \
                      requests), transactions, seconds waited for a turn at the pool, and the \
                      connections they hold and transactions they have waiting now. It reads the \
                      instance's metrics endpoint (the example app serves it on \
                      TENANTRY_METRICS_BIND) and needs no database URL. Each instance counts its \
                      own load: ask each one. Tenants beyond the busiest the instance names \
                      (TENANTRY_METRICS_TENANTS) are shown together as _other.",
        after_help = EXIT_CODES
    )]
    Top(TopArgs),
}

/// Flags of `tenantry top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// The instance's metrics endpoint [env: TENANTRY_METRICS_URL] [default:
    /// http://127.0.0.1:9100/metrics]
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,

    /// Over the last minute or the last five
    #[arg(long, value_name = "WINDOW", default_value = "5m", value_parser = ["1m", "5m"])]
    pub(crate) window: String,

    /// How many tenants to show, busiest first (1–100)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        value_parser = clap::value_parser!(u16).range(1..=100)
    )]
    pub(crate) limit: u16,
}

/// Flags of `tenantry rotate-tenant-key`.
#[derive(Debug, Args)]
pub(crate) struct RotateTenantKeyArgs {
    /// How long the older keys stay valid: a PostgreSQL interval such as `1h`, `30min`, `0s`
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub(crate) grace: String,
}

/// Flags of `tenantry doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Also check readiness for Citus (tenant tables sharded by their tenant column)
    #[arg(long)]
    pub(crate) citus: bool,
}

/// Flags of `tenantry seed-tenant`.
#[derive(Debug, Args)]
pub(crate) struct SeedTenantArgs {
    /// Display name of the tenant, e.g. "Acme Corp"
    #[arg(long, value_name = "NAME")]
    pub(crate) name: String,

    /// URL-safe identifier, e.g. acme-corp (lowercase letters, digits and inner '-');
    /// derived from --name when omitted
    #[arg(long, value_name = "SLUG")]
    pub(crate) slug: Option<String>,
}

/// Flags of `tenantry add-user`: one of `--email` or `--service-token`, and one of `--owner`,
/// `--tenant SLUG --role ROLE` or `--reset-subject`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("identity").required(true).args(["email", "service_token"])))]
#[command(group(ArgGroup::new("grant").required(true).multiple(true).args(["owner", "tenant", "reset_subject"])))]
pub(crate) struct AddUserArgs {
    /// Email address of a person (ASCII; matched case-insensitively, ASCII letters only)
    #[arg(long, value_name = "EMAIL")]
    pub(crate) email: Option<String>,

    /// Client id of a Cloudflare Access service token, as the dashboard shows it
    /// (`<id>.access`; `.access` is added when missing): the identity its requests carry in
    /// `common_name`
    #[arg(long, value_name = "CLIENT_ID")]
    pub(crate) service_token: Option<String>,

    /// Grant the global Owner role (may act in every tenant)
    #[arg(long, conflicts_with_all = ["tenant", "role"])]
    pub(crate) owner: bool,

    /// Slug of the tenant to grant --role in
    #[arg(long, value_name = "SLUG", requires = "role")]
    pub(crate) tenant: Option<String>,

    /// Role inside --tenant
    #[arg(long, value_name = "ROLE", requires = "tenant", value_parser = role_parser())]
    pub(crate) role: Option<TenantRole>,

    /// Clear the identity-provider subject (`sub`) recorded for --email, so that its next token
    /// records its own: after the address was given to a new account. Until then a token for
    /// the email with another subject is refused
    #[arg(long, requires = "email")]
    pub(crate) reset_subject: bool,
}

/// `--role`: the runtime's [`TenantRole`] a membership can hold (`owner` is `--owner`).
fn role_parser() -> impl TypedValueParser<Value = TenantRole> {
    PossibleValuesParser::new(["partner", "client-viewer", "client_viewer"]).map(|role| {
        if role == "partner" {
            TenantRole::Partner
        } else {
            TenantRole::ClientViewer
        }
    })
}

/// Flags of `tenantry audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// How many rows to print, newest first (1–500)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20,
        value_parser = clap::value_parser!(u16).range(1..=500)
    )]
    pub(crate) limit: u16,

    /// Check the hash chain instead: print the row count and the head, or name the first
    /// broken row and exit 1
    #[arg(long, conflicts_with = "limit")]
    pub(crate) verify: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn add_user_needs_exactly_one_grant() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(["tenantry", "add-user"].iter().chain(args));
        assert!(parse(&["--email", "a@b.co", "--owner"]).is_ok());
        assert!(parse(&["--email", "a@b.co", "--tenant", "x", "--role", "partner"]).is_ok());
        assert!(parse(&[
            "--email",
            "a@b.co",
            "--tenant",
            "x",
            "--role",
            "client_viewer"
        ])
        .is_ok());
        assert!(parse(&["--email", "a@b.co"]).is_err());
        assert!(parse(&["--email", "a@b.co", "--owner", "--tenant", "x"]).is_err());
        assert!(parse(&["--email", "a@b.co", "--tenant", "x"]).is_err());
        assert!(parse(&["--email", "a@b.co", "--role", "partner"]).is_err());
        assert!(parse(&["--email", "a@b.co", "--tenant", "x", "--role", "owner"]).is_err());
        assert!(parse(&["--service-token", "ab12.access", "--owner"]).is_ok());
        assert!(parse(&["--owner"]).is_err(), "an identity is required");
        assert!(
            parse(&[
                "--email",
                "a@b.co",
                "--service-token",
                "ab12.access",
                "--owner"
            ])
            .is_err(),
            "one identity"
        );
    }

    #[test]
    fn audit_limit_is_bounded() {
        let parse = |n: &str| Cli::try_parse_from(["tenantry", "audit", "--limit", n]);
        assert!(parse("1").is_ok());
        assert!(parse("500").is_ok());
        assert!(parse("0").is_err());
        assert!(parse("501").is_err());
        assert!(parse("x").is_err());
        let verify = Cli::try_parse_from(["tenantry", "audit", "--verify"]);
        assert!(verify.is_ok());
        assert!(Cli::try_parse_from(["tenantry", "audit", "--verify", "--limit", "5"]).is_err());
    }
}
