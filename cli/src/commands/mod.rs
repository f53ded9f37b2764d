//! The commands, one file each; [`run`] dispatches.

mod add_user;
mod audit;
mod citus_plan;
mod doctor;
mod migrate;
mod rotate_tenant_key;
mod seed_tenant;
mod top;

use std::io::Write;

use crate::args::{Cli, Command};
use crate::config::DbTarget;
use crate::db;
use crate::error::CliError;

/// Runs the parsed command line, writing its report to `out`.
pub(crate) async fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    if let Command::Top(args) = &cli.command {
        // A running instance's metrics: no database.
        return top::run(args, out).await;
    }
    let target = DbTarget::resolve(cli.database_url.as_deref())?;
    match cli.command {
        Command::Migrate => {
            let conn = db::connect(&target).await?;
            migrate::run(conn, &target, out).await
        }
        Command::SeedTenant(args) => {
            let input = seed_tenant::Input::from_args(&args)?;
            let mut conn = db::connect(&target).await?;
            db::require_migrated(&mut conn, &target).await?;
            seed_tenant::run(&mut conn, input, out).await
        }
        Command::AddUser(args) => {
            let input = add_user::Input::from_args(&args)?;
            let mut conn = db::connect(&target).await?;
            db::require_migrated(&mut conn, &target).await?;
            add_user::run(&mut conn, input, out).await
        }
        Command::Audit(args) => {
            let mut conn = db::connect(&target).await?;
            db::require_migrated(&mut conn, &target).await?;
            if args.verify {
                audit::verify(&mut conn, &target, out).await
            } else {
                audit::run(&mut conn, args.limit, out).await
            }
        }
        Command::Doctor(args) => {
            let role = crate::config::app_role()?;
            let bypass = crate::config::bypass_role()?;
            let mut conn = db::connect(&target).await?;
            doctor::run(&mut conn, &role, &bypass, args.citus, out).await
        }
        Command::RotateTenantKey(args) => {
            let mut conn = db::connect(&target).await?;
            db::require_migrated(&mut conn, &target).await?;
            rotate_tenant_key::run(&mut conn, &args.grace, out).await
        }
        Command::Top(_) => unreachable!("handled above"),
        Command::CitusPlan => {
            let role = crate::config::app_role()?;
            let mut conn = db::connect(&target).await?;
            db::require_migrated(&mut conn, &target).await?;
            citus_plan::run(&mut conn, &role, out).await
        }
    }
}
