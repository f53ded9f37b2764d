//! The dev mode: every request is the user of `TENANTRY_DEV_USER_EMAIL`, on a developer's
//! machine only (the settings refuse `TENANTRY_ENV=production` and a non-loopback bind), loudly:
//! a warning at start, and [`mark_dev_mode`] marks every response.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use axum::http::HeaderMap;

use crate::identity::auth::{AuthError, Identity};

/// The identity of every request in dev mode, if the request names a loopback host.
///
/// A web page can rebind its own name to 127.0.0.1 (DNS rebinding) and then talk to the
/// developer's server from the browser, same-origin as far as the browser knows: its `Host`
/// (and `Origin`) carry the attacker's name. So dev mode answers only `localhost`, `*.localhost`,
/// `127.0.0.0/8` and `[::1]` (any port), and refuses every other `Host`, or none.
pub(crate) fn identity(email: &str, headers: &HeaderMap) -> Result<Identity, AuthError> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_loopback_host(host) {
        return Err(AuthError::Forbidden(format!(
            "dev mode answers only loopback host names (localhost, 127.0.0.1, [::1]); this \
             request names {host:?}"
        )));
    }
    let email = match picked_user(headers)? {
        Some(picked) => picked,
        None => email,
    };
    Ok(Identity::User {
        email: email.to_owned(),
        sub: None,
    })
}

/// The header with which a dev-mode request picks its user (a Partner, a Viewer, an Owner of the
/// dev database) instead of `TENANTRY_DEV_USER_EMAIL`, so that every role can be tried without a
/// restart. Any other mode refuses a request that carries it.
pub const DEV_USER_HEADER: &str = "x-tenantry-dev-user";

/// The user a dev-mode request names in [`DEV_USER_HEADER`], if any: one value, an ASCII
/// address.
fn picked_user(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(DEV_USER_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |why: &str| {
        AuthError::Unauthenticated(format!(
            "{DEV_USER_HEADER}: {why}; name one user of the dev database by email"
        ))
    };
    if values.next().is_some() {
        return Err(bad("given more than once"));
    }
    let email = value.to_str().map_err(|_| bad("not ASCII"))?.trim();
    if email.is_empty() || email.len() > 254 || !email.contains('@') {
        return Err(bad("not an email address"));
    }
    Ok(Some(email))
}

/// Outside dev mode, a request that carries [`DEV_USER_HEADER`] is refused: a header meant for
/// a developer's machine never reaches production unnoticed, nor is silently ignored there.
pub(crate) fn refuse_dev_header(headers: &HeaderMap) -> Result<(), AuthError> {
    if headers.contains_key(DEV_USER_HEADER) {
        return Err(AuthError::Forbidden(format!(
            "{DEV_USER_HEADER} is accepted only in dev mode (TENANTRY_AUTH_MODE=dev); remove it"
        )));
    }
    Ok(())
}

/// `host[:port]` names the loopback interface.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inner, port)) if port.is_empty() || port.starts_with(':') => inner,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The warning logged when an authenticator in dev mode is made.
pub(crate) fn warn(email: &str) {
    tracing::warn!(
        user = %email,
        "DEV AUTH MODE: every request is {email}; never use this outside a developer machine"
    );
}

/// axum middleware marking every response of a dev-mode server with `X-Tenantry-Auth-Mode: dev`.
pub async fn mark_dev_mode(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        "x-tenantry-auth-mode",
        axum::http::HeaderValue::from_static("dev"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::{identity, is_loopback_host, refuse_dev_header, DEV_USER_HEADER};
    use crate::identity::auth::{AuthError, Identity};
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn email(result: Result<Identity, AuthError>) -> String {
        match result.unwrap() {
            Identity::User { email, .. } => email,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_dev_request_may_pick_its_user_with_the_header() {
        let dev = "dev@example.com";
        assert_eq!(
            email(identity(dev, &headers(&[("host", "localhost:3000")]))),
            dev
        );
        let picked = headers(&[
            ("host", "localhost:3000"),
            (DEV_USER_HEADER, "viewer@acme.test"),
        ]);
        assert_eq!(email(identity(dev, &picked)), "viewer@acme.test");
        // Still loopback only.
        let remote = headers(&[
            ("host", "evil.example"),
            (DEV_USER_HEADER, "viewer@acme.test"),
        ]);
        assert!(matches!(
            identity(dev, &remote),
            Err(AuthError::Forbidden(_))
        ));
        for bad in ["", "   ", "no-at-sign"] {
            let h = headers(&[("host", "localhost"), (DEV_USER_HEADER, bad)]);
            let e = identity(dev, &h).unwrap_err();
            assert!(matches!(e, AuthError::Unauthenticated(_)), "{bad:?}: {e}");
            assert!(e.to_string().contains(DEV_USER_HEADER), "{e}");
        }
        let twice = headers(&[
            ("host", "localhost"),
            (DEV_USER_HEADER, "a@acme.test"),
            (DEV_USER_HEADER, "b@acme.test"),
        ]);
        assert!(identity(dev, &twice).is_err());
    }

    #[test]
    fn other_modes_refuse_the_dev_user_header() {
        assert!(refuse_dev_header(&headers(&[("host", "localhost")])).is_ok());
        let e = refuse_dev_header(&headers(&[(DEV_USER_HEADER, "owner@acme.test")])).unwrap_err();
        assert!(matches!(e, AuthError::Forbidden(_)));
        assert!(e.to_string().contains("only in dev mode"), "{e}");
    }

    #[test]
    fn only_loopback_names_are_answered() {
        for ok in [
            "localhost",
            "localhost:3000",
            "LOCALHOST:3000",
            "app.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:3000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:3000",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:3000",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:3000",
            "[::2]:3000",
            "[::1",
            "localhost:abc",
            "0.0.0.0:3000",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
