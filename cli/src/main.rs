//! `tenantry`: the command line of tenantry (migrate, seed-tenant, add-user, audit, doctor,
//! citus-plan).
//!
//! Every command connects with `DATABASE_URL` (or `--database-url`), the migration/owner role
//! of the contract, so it uses plain Diesel on tenantry's own tables. Exit codes are listed in
//! [`error::exit`] and in `tenantry --help`.

mod args;
mod commands;
mod config;
mod db;
mod error;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::error::CliError;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Usage errors (and --help) are reported by clap itself, with exit code 2 (0 for help).
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let result = commands::run(cli, &mut stdout).await;
    let _ = stdout.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`tenantry audit | head`): nothing left to tell.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(error::exit::FAILED)
        }
        Err(e) => {
            // One line, whatever the database put into its message.
            let line = e.to_string().replace(['\n', '\r'], " ");
            eprintln!("error: {line}");
            ExitCode::from(e.exit_code())
        }
    }
}
