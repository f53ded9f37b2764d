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
    Ok(Identity::User {
        email: email.to_owned(),
        sub: None,
    })
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
    use super::is_loopback_host;

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
