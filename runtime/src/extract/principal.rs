//! [`load_principal`]: an identity's principal, from the principal cache or the directory.

use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::Db;
use crate::identity::auth::{AuthError, Identity};
use crate::identity::directory::{PrincipalRow, PrincipalRows, RecordSub};
use crate::identity::{Membership, Principal, TenantRole};

/// Maps `identity` to its principal: from the process's principal cache when it holds the
/// identity (no query), else in one round trip through the directory function
/// `tenantry_principal` (the app role cannot read `users` whole): the user by case-insensitive
/// email (a service token: the service identity by its common name; the kinds never mix) and
/// its memberships. Unknown identity → `NotProvisioned` (cached too, until the directory
/// changes).
///
/// The cache is emptied by every change to the directory, on every instance, as soon as it
/// commits (`LISTEN`/`NOTIFY`); when that listener is down, entries live at most
/// [`DbConfig::principal_cache_ttl`](crate::db::DbConfig::principal_cache_ttl) (see
/// [`DbConfig::listen_url`](crate::db::DbConfig::listen_url)).
///
/// What the authenticator calls. A `Principal` grants nothing by itself: the extractors trust
/// only the one the authenticator stored in the request, never a value built or looked up
/// elsewhere.
///
/// The token's `sub` is recorded on the user's first request; a later token for the same email
/// with another `sub` (the identity provider re-created the account, or the address went to
/// someone else) is refused with [`AuthError::SubjectChanged`] until an operator clears the
/// recorded one (`tenantry add-user --email .. --reset-subject`).
pub async fn load_principal(db: &Db, identity: &Identity) -> Result<Principal, AuthError> {
    let cache = db.principals();
    if let Some(entry) = cache.get(identity) {
        let Some((principal, stored_sub)) = &entry.found else {
            return Err(AuthError::NotProvisioned(identity.email().to_owned()));
        };
        if let Some(sub) = new_sub(identity, stored_sub.as_deref())? {
            let mut conn = db.directory_conn().await.map_err(|e| {
                tracing::error!(error = %e, "recording a subject failed");
                AuthError::Unavailable("the user directory is unavailable".into())
            })?;
            let stored = record_sub(&mut conn, principal.user_id, sub).await?;
            same_subject(identity, stored.as_deref())?;
            let found = Some((principal.clone(), stored));
            cache.insert(identity, found, entry.generation);
        }
        return Ok(principal.clone());
    }
    // Begun before the lookup: a change that commits meanwhile keeps its result out of the cache.
    let generation = cache.generation();
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "principal lookup failed");
        AuthError::Unavailable("the user directory is unavailable".into())
    };
    let mut conn = db.directory_conn().await.map_err(|e| unavailable(&e))?;
    let rows: Vec<PrincipalRow> = PrincipalRows {
        email: identity.email().to_owned(),
        kind: identity.kind(),
    }
    .load(&mut *conn)
    .await
    .map_err(|e| unavailable(&e))?;
    let Some(first) = rows.as_slice().first() else {
        cache.insert(identity, None, generation);
        return Err(AuthError::NotProvisioned(identity.email().to_owned()));
    };
    let (user_id, email, is_owner, mut stored_sub) =
        (first.0, first.1.clone(), first.2, first.3.clone());
    let memberships = rows
        .into_iter()
        .filter_map(|(.., tenant_id, role, slug, name)| {
            Some(Membership {
                tenant_id: tenant_id?,
                slug: slug?,
                name: name?,
                role: TenantRole::parse(&role?)?,
            })
        })
        .collect();
    let principal_key = identity.email();
    if let Some(sub) = new_sub(identity, stored_sub.as_deref()).inspect_err(|_| {
        // The refusal is not cached: the operator's reset must take effect at once.
        tracing::warn!(
            identity = principal_key,
            "a token's subject differs from the recorded one"
        );
    })? {
        stored_sub = record_sub(&mut conn, user_id, sub).await?;
        same_subject(identity, stored_sub.as_deref())?;
    }
    let principal = Principal {
        user_id,
        email: email.into(),
        is_owner,
        memberships,
    };
    cache.insert(identity, Some((principal.clone(), stored_sub)), generation);
    Ok(principal)
}

/// The token's `sub` to record: `Some` when the user has none recorded yet. A token whose `sub`
/// differs from the recorded one is refused: the email was given to someone else (the identity
/// provider issues a new subject to a re-created account), and only an operator re-provisions it.
fn new_sub<'a>(identity: &'a Identity, stored: Option<&str>) -> Result<Option<&'a str>, AuthError> {
    match identity {
        Identity::User { sub: Some(sub), .. } if !sub.is_empty() => match stored {
            None => Ok(Some(sub)),
            Some(s) if s == sub => Ok(None),
            Some(_) => Err(subject_changed(identity)),
        },
        _ => Ok(None),
    }
}

/// `Ok` when the stored `sub` (after recording) is the token's.
fn same_subject(identity: &Identity, stored: Option<&str>) -> Result<(), AuthError> {
    match (identity, stored) {
        (Identity::User { sub: Some(sub), .. }, Some(s)) if s != sub => {
            Err(subject_changed(identity))
        }
        _ => Ok(()),
    }
}

fn subject_changed(identity: &Identity) -> AuthError {
    AuthError::SubjectChanged(identity.email().to_owned())
}

/// Records `sub` beside a user that has none (`tenantry_record_sub`) and returns the stored one.
/// Recording changes nothing a principal grants, so it does not empty the principal caches (see
/// migration `0003_directory_notify`).
async fn record_sub(
    conn: &mut crate::pool::Pooled,
    user: Uuid,
    sub: &str,
) -> Result<Option<String>, AuthError> {
    RecordSub {
        user,
        sub: sub.to_owned(),
    }
    .get_result::<Option<String>>(&mut **conn)
    .await
    .map_err(|e| {
        tracing::error!(error = %e, %user, "could not record the token's subject");
        AuthError::Unavailable("the user directory is unavailable".into())
    })
}
