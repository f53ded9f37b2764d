//! `tenantry add-user`: create a user if needed and grant Owner or a role in one tenant.

use std::io::Write;

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tenantry::schema::{memberships, tenants, users};
use uuid::Uuid;

use tenantry::identity::TenantRole;

use crate::args::AddUserArgs;
use crate::error::CliError;

/// `users.email` equals `key` folded ASCII-only, as its unique index `lower(email COLLATE "C")`
/// (migration 00000000000008) and the principal lookup fold it (`lower(email)` would fold by the
/// server's locale: the Kelvin sign to `k`).
#[allow(
    clippy::disallowed_methods,
    reason = "a literal fragment on the migration connection; the key is a bound value"
)]
fn same_key(
    key: &str,
) -> diesel::expression::SqlLiteral<
    diesel::sql_types::Bool,
    impl diesel::query_builder::QueryFragment<diesel::pg::Pg> + diesel::query_builder::QueryId + Send,
> {
    diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email COLLATE \"C\") = lower(")
        .bind::<diesel::sql_types::Text, _>(key.to_owned())
        .sql(" COLLATE \"C\")")
}

/// What to grant.
#[derive(Debug)]
enum Grant {
    Owner,
    Member {
        slug: String,
        role: TenantRole,
    },
    /// Nothing to grant: `--reset-subject` alone.
    Nothing,
}

/// A validated `add-user` request.
#[derive(Debug)]
pub(super) struct Input {
    /// The identity's key: an email, or a service token's common name.
    email: String,
    /// `users.kind`: `person` or `service`.
    kind: &'static str,
    grant: Grant,
    /// `--reset-subject`.
    reset_subject: bool,
}

impl Input {
    /// Checks the identity and the grant flags (clap has already enforced their combination).
    pub(super) fn from_args(args: &AddUserArgs) -> Result<Self, CliError> {
        let (email, kind) = match (&args.email, &args.service_token) {
            (Some(email), _) => {
                let email = email.trim();
                if !looks_like_email(email) {
                    return Err(CliError::Invalid {
                        flag: "--email",
                        problem: format!(
                            "{email:?} is not an email address (expected name@example.com)"
                        ),
                    });
                }
                if !email.is_ascii() {
                    return Err(CliError::Invalid {
                        flag: "--email",
                        problem: format!(
                            "{email:?} is not ASCII: identities are keyed by ASCII addresses \
                             (folded ASCII-only), so write the domain in its xn-- form"
                        ),
                    });
                }
                (email.to_owned(), "person")
            }
            (None, Some(client_id)) => (service_common_name(client_id)?, "service"),
            (None, None) => {
                return Err(CliError::Invalid {
                    flag: "--email",
                    problem: "pass --email EMAIL or --service-token CLIENT_ID".into(),
                })
            }
        };
        let grant = match (args.owner, &args.tenant, args.role) {
            (true, None, None) => Grant::Owner,
            (false, Some(slug), Some(role)) => Grant::Member {
                slug: slug.trim().to_owned(),
                role,
            },
            (false, None, None) if args.reset_subject => Grant::Nothing,
            _ => {
                return Err(CliError::Invalid {
                    flag: "--owner",
                    problem: "pass either --owner or --tenant SLUG --role ROLE".into(),
                })
            }
        };
        Ok(Input {
            email,
            kind,
            grant,
            reset_subject: args.reset_subject,
        })
    }
}

/// The common name a service token's requests carry: the client id, `<id>.access`.
fn service_common_name(client_id: &str) -> Result<String, CliError> {
    let client_id = client_id.trim();
    let name = if client_id.ends_with(".access") {
        client_id.to_owned()
    } else {
        format!("{client_id}.access")
    };
    if tenantry::auth::is_service_common_name(&name) {
        Ok(name)
    } else {
        Err(CliError::Invalid {
            flag: "--service-token",
            problem: format!(
                "{client_id:?} is not a service token's client id (expected letters, digits, \
                 '-' or '_', as in 88bf3b6d86161464f6509f7219099e57.access)"
            ),
        })
    }
}

/// One `@` between a non-empty local part and a dotted domain; no spaces or control characters.
fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What the transaction did.
struct Outcome {
    user_id: Uuid,
    stored_email: String,
    service: bool,
    user_created: bool,
    grant: GrantOutcome,
    subject_reset: bool,
}

enum GrantOutcome {
    Nothing,
    OwnerGranted,
    OwnerAlready,
    MemberAdded {
        slug: String,
        role: &'static str,
    },
    MemberAlready {
        slug: String,
        role: &'static str,
    },
    MemberChanged {
        slug: String,
        from: String,
        to: &'static str,
    },
}

/// Creates the user if needed and grants the role, in one transaction.
pub(super) async fn run(
    conn: &mut AsyncPgConnection,
    input: Input,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let outcome = conn
        .transaction::<_, CliError, _>(async move |conn| apply(conn, input).await)
        .await?;
    report(&outcome, out)
}

async fn apply(conn: &mut AsyncPgConnection, input: Input) -> Result<Outcome, CliError> {
    // Look the tenant up first: a missing tenant must not leave a new user behind.
    let tenant = match &input.grant {
        Grant::Owner | Grant::Nothing => None,
        Grant::Member { slug, .. } => Some(
            tenants::table
                .filter(tenants::slug.eq(slug))
                .select(tenants::id)
                .first::<Uuid>(conn)
                .await
                .optional()?
                .ok_or_else(|| CliError::TenantNotFound { slug: slug.clone() })?,
        ),
    };

    // `ON CONFLICT DO NOTHING` covers the unique index on lower(email COLLATE "C").
    let inserted: Option<(Uuid, String)> = diesel::insert_into(users::table)
        .values((users::email.eq(&input.email), users::kind.eq(input.kind)))
        .on_conflict_do_nothing()
        .returning((users::id, users::email))
        .get_result(conn)
        .await
        .optional()?;
    let user_created = inserted.is_some();
    let (user_id, stored_email) = match inserted {
        Some(user) => user,
        None => {
            users::table
                .filter(same_key(&input.email))
                .select((users::id, users::email))
                .first(conn)
                .await?
        }
    };

    let subject_reset = if input.reset_subject {
        diesel::update(users::table.find(user_id))
            .set(users::cf_sub.eq(None::<String>))
            .execute(conn)
            .await?;
        true
    } else {
        false
    };
    let grant = match (input.grant, tenant) {
        (Grant::Nothing, _) => GrantOutcome::Nothing,
        (Grant::Member { slug, role }, Some(tenant_id)) => {
            let to = role.as_str();
            let current: Option<String> = memberships::table
                .find((user_id, tenant_id))
                .select(memberships::role)
                .for_update()
                .first(conn)
                .await
                .optional()?;
            match current {
                Some(from) if from == to => GrantOutcome::MemberAlready { slug, role: to },
                Some(from) => {
                    diesel::update(memberships::table.find((user_id, tenant_id)))
                        .set(memberships::role.eq(to))
                        .execute(conn)
                        .await?;
                    GrantOutcome::MemberChanged { slug, from, to }
                }
                None => {
                    let added = diesel::insert_into(memberships::table)
                        .values((
                            memberships::user_id.eq(user_id),
                            memberships::tenant_id.eq(tenant_id),
                            memberships::role.eq(to),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                    if added == 1 {
                        GrantOutcome::MemberAdded { slug, role: to }
                    } else {
                        GrantOutcome::MemberAlready { slug, role: to }
                    }
                }
            }
        }
        _ => {
            let changed =
                diesel::update(users::table.find(user_id).filter(users::is_owner.eq(false)))
                    .set(users::is_owner.eq(true))
                    .execute(conn)
                    .await?;
            if changed == 1 {
                GrantOutcome::OwnerGranted
            } else {
                GrantOutcome::OwnerAlready
            }
        }
    };
    Ok(Outcome {
        user_id,
        stored_email,
        service: input.kind == "service",
        user_created,
        grant,
        subject_reset,
    })
}

fn report(o: &Outcome, out: &mut impl Write) -> Result<(), CliError> {
    let email = &o.stored_email;
    let what = if o.service {
        "service identity"
    } else {
        "user"
    };
    if o.user_created {
        writeln!(out, "created {what} {email} (id {})", o.user_id)?;
    } else {
        writeln!(
            out,
            "unchanged: {what} {email} already exists (id {})",
            o.user_id
        )?;
    }
    if o.subject_reset {
        writeln!(
            out,
            "cleared the recorded subject of {email}: its next token records its own"
        )?;
    }
    match &o.grant {
        GrantOutcome::Nothing => {}
        GrantOutcome::OwnerGranted => writeln!(out, "granted Owner to {email}")?,
        GrantOutcome::OwnerAlready => writeln!(out, "unchanged: {email} is already an Owner")?,
        GrantOutcome::MemberAdded { slug, role } => {
            writeln!(out, "granted {role} in tenant {slug} to {email}")?
        }
        GrantOutcome::MemberAlready { slug, role } => {
            writeln!(out, "unchanged: {email} is already {role} in tenant {slug}")?
        }
        GrantOutcome::MemberChanged { slug, from, to } => writeln!(
            out,
            "changed the role of {email} in tenant {slug} from {from} to {to}"
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{looks_like_email, service_common_name};

    #[test]
    fn service_tokens_are_named_by_their_client_id() {
        let id = "88bf3b6d86161464f6509f7219099e57";
        assert_eq!(service_common_name(id).unwrap(), format!("{id}.access"));
        assert_eq!(
            service_common_name(&format!(" {id}.access ")).unwrap(),
            format!("{id}.access")
        );
        for bad in ["", ".access", "a@b.access", "a b", "a.b", "-x"] {
            assert!(service_common_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_are_checked() {
        for ok in ["a@b.co", "Alice.Smith+x@mail.example.com"] {
            assert!(looks_like_email(ok), "{ok}");
        }
        for bad in [
            "", "alice", "@b.co", "a@", "a@b", "a@@b.co", "a@b..co", "a@.b.co", "a b@c.co",
            "a@b.co\n",
        ] {
            assert!(!looks_like_email(bad), "{bad:?}");
        }
    }
}
