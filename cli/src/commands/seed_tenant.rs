//! `tenantry seed-tenant`: create a tenant, idempotently by slug.

use std::io::Write;

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tenantry::schema::tenants;
use uuid::Uuid;

use crate::args::SeedTenantArgs;
use crate::error::CliError;

/// A validated tenant to create.
#[derive(Debug)]
pub(super) struct Input {
    name: String,
    slug: String,
}

impl Input {
    /// Checks the name and the slug (given or derived) before touching the database.
    pub(super) fn from_args(args: &SeedTenantArgs) -> Result<Self, CliError> {
        let name = args.name.trim();
        if name.is_empty() {
            return Err(invalid("--name", "must not be empty".into()));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid(
                "--name",
                format!("{name:?} contains control characters"),
            ));
        }
        let slug = match &args.slug {
            // The one parser of tenant keys: what `Uuid::parse_str` reads is an id, never a slug
            // (the schema's `tenants_slug_is_not_an_id` agrees, migration 00000000000008).
            Some(slug) if uuid::Uuid::parse_str(slug).is_ok() => {
                return Err(invalid(
                    "--slug",
                    format!(
                        "{slug:?} is shaped like a tenant id (a UUID): X-Tenant would read it as \
                         an id; pick a slug that is not a UUID"
                    ),
                ))
            }
            Some(slug) if is_valid_slug(slug) => slug.clone(),
            Some(slug) => {
                return Err(invalid(
                    "--slug",
                    format!(
                        "{slug:?} is not a valid slug: use lowercase ASCII letters, digits and \
                         '-' (not first or last), e.g. acme-corp"
                    ),
                ))
            }
            None => {
                let slug = derive_slug(name);
                if uuid::Uuid::parse_str(&slug).is_ok() {
                    return Err(invalid(
                        "--name",
                        format!(
                            "the slug derived from {name:?} is shaped like a tenant id (a UUID); \
                             pass another one with --slug"
                        ),
                    ));
                }
                if !is_valid_slug(&slug) {
                    return Err(invalid(
                        "--name",
                        format!(
                            "cannot derive a slug from {name:?} (it has no ASCII letters or \
                             digits); pass one with --slug"
                        ),
                    ));
                }
                slug
            }
        };
        Ok(Input {
            name: name.to_owned(),
            slug,
        })
    }
}

fn invalid(flag: &'static str, problem: String) -> CliError {
    CliError::Invalid { flag, problem }
}

/// Lowercase ASCII letters and digits of `name`; every other run of characters becomes one
/// `-`, none at either end.
fn derive_slug(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    let mut pending_dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !slug.is_empty() {
                slug.push('-');
            }
            pending_dash = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    slug
}

/// The `tenants.slug` CHECK: `^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`.
fn is_valid_slug(slug: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    edge_ok(slug.chars().next())
        && edge_ok(slug.chars().last())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Creates the tenant unless its slug exists, and prints its id and slug.
pub(super) async fn run(
    conn: &mut AsyncPgConnection,
    input: Input,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let created: Option<Uuid> = diesel::insert_into(tenants::table)
        .values((tenants::slug.eq(&input.slug), tenants::name.eq(&input.name)))
        .on_conflict(tenants::slug)
        .do_nothing()
        .returning(tenants::id)
        .get_result(conn)
        .await
        .optional()?;
    let id = match created {
        Some(id) => {
            writeln!(out, "created tenant {:?}", input.name)?;
            id
        }
        None => {
            let (id, name): (Uuid, String) = tenants::table
                .filter(tenants::slug.eq(&input.slug))
                .select((tenants::id, tenants::name))
                .first(conn)
                .await?;
            if name == input.name {
                writeln!(out, "unchanged: tenant {:?} already exists", name)?;
            } else {
                writeln!(
                    out,
                    "unchanged: slug {} already belongs to tenant {:?} (its name stays; {:?} \
                     was not applied)",
                    input.slug, name, input.name
                )?;
            }
            id
        }
    };
    writeln!(out, "id:   {id}")?;
    writeln!(out, "slug: {}", input.slug)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(derive_slug("Acme Corp"), "acme-corp");
        assert_eq!(derive_slug("  --Acme,  Corp & Sons!  "), "acme-corp-sons");
        assert_eq!(derive_slug("Café Zürich 2"), "caf-z-rich-2");
        assert_eq!(derive_slug("日本"), "");
    }

    #[test]
    fn slugs_follow_the_table_check() {
        for ok in ["a", "acme-corp", "a--b", "9lives"] {
            assert!(is_valid_slug(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "Acme", "a b", "a_b", "é"] {
            assert!(!is_valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        let input = |name: &str, slug: Option<&str>| {
            Input::from_args(&SeedTenantArgs {
                name: name.into(),
                slug: slug.map(Into::into),
            })
        };
        assert!(input("  ", None).is_err());
        assert!(input("日本", None).is_err());
        assert!(input("日本", Some("nihon")).is_ok());
        assert!(input("Acme", Some("Acme")).is_err());
        let ok = input(" Acme Corp ", None).expect("valid");
        assert_eq!(
            (ok.name.as_str(), ok.slug.as_str()),
            ("Acme Corp", "acme-corp")
        );
    }
}
