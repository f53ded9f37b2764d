//! Finding the Access token in a request: the `Cf-Access-Jwt-Assertion` header, else the
//! `CF_Authorization` cookie. The unsigned `Cf-Access-Authenticated-User-Email` header is never read.

use http::header::COOKIE;
use http::HeaderMap;

use crate::identity::auth::AuthError;

/// The header Cloudflare Access sets on every request it lets through.
pub const ASSERTION_HEADER: &str = "cf-access-jwt-assertion";

/// The cookie Cloudflare Access sets in browsers (not guaranteed on every request).
pub const AUTHORIZATION_COOKIE: &str = "CF_Authorization";

/// The Access token of a request, not yet verified.
///
/// When the `Cf-Access-Jwt-Assertion` header is present it alone decides: sent twice, empty or
/// not visible ASCII, it is refused even if a good cookie is present. Otherwise the
/// `CF_Authorization` cookie is used (from any `Cookie` header; two different values are
/// refused). `Ok(None)` means neither is present. An `Authorization: Bearer …` header is not
/// consulted.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use tenantry_runtime::identity::auth::cloudflare::token_from_headers;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("cookie", HeaderValue::from_static("a=1; CF_Authorization=eyJ.x.y"));
/// assert_eq!(token_from_headers(&headers).unwrap(), Some("eyJ.x.y"));
///
/// headers.insert("cf-access-jwt-assertion", HeaderValue::from_static(""));
/// assert!(token_from_headers(&headers).is_err()); // the header decides, even when empty
/// ```
pub fn token_from_headers(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut assertions = headers.get_all(ASSERTION_HEADER).iter();
    if let Some(value) = assertions.next() {
        if assertions.next().is_some() {
            return Err(AuthError::unauthenticated(
                "the Cf-Access-Jwt-Assertion header is sent more than once",
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| {
                AuthError::unauthenticated(
                    "the Cf-Access-Jwt-Assertion header is not visible ASCII",
                )
            })?
            .trim();
        if value.is_empty() {
            return Err(AuthError::unauthenticated(
                "the Cf-Access-Jwt-Assertion header is empty",
            ));
        }
        return Ok(Some(value));
    }
    cookie_token(headers)
}

fn cookie_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut found: Option<&str> = None;
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            if pair[..eq].trim_ascii() != AUTHORIZATION_COOKIE.as_bytes() {
                continue;
            }
            let raw = pair[eq + 1..].trim_ascii();
            let raw = raw
                .strip_prefix(b"\"")
                .and_then(|r| r.strip_suffix(b"\""))
                .unwrap_or(raw);
            let value = std::str::from_utf8(raw).map_err(|_| {
                AuthError::unauthenticated("the CF_Authorization cookie is not valid text")
            })?;
            if value.is_empty() {
                return Err(AuthError::unauthenticated(
                    "the CF_Authorization cookie is empty",
                ));
            }
            match found {
                Some(previous) if previous != value => {
                    return Err(AuthError::unauthenticated(
                        "two different CF_Authorization cookies were sent",
                    ));
                }
                _ => found = Some(value),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn header_wins_over_cookie() {
        let h = headers(&[
            ("cf-access-jwt-assertion", "h.h.h"),
            ("cookie", "CF_Authorization=c.c.c"),
        ]);
        assert_eq!(token_from_headers(&h).unwrap(), Some("h.h.h"));
    }

    #[test]
    fn header_alone_decides() {
        let twice = headers(&[
            ("cf-access-jwt-assertion", "a.a.a"),
            ("cf-access-jwt-assertion", "a.a.a"),
        ]);
        assert!(token_from_headers(&twice).is_err());
        let empty = headers(&[
            ("cf-access-jwt-assertion", " "),
            ("cookie", "CF_Authorization=c.c.c"),
        ]);
        assert!(token_from_headers(&empty).is_err());
    }

    #[test]
    fn cookie_in_any_cookie_header() {
        let h = headers(&[
            ("cookie", "a=b"),
            ("cookie", "x=y; CF_Authorization=\"c.c.c\"; z=1"),
        ]);
        assert_eq!(token_from_headers(&h).unwrap(), Some("c.c.c"));
        let same = headers(&[
            ("cookie", "CF_Authorization=c.c.c"),
            ("cookie", "CF_Authorization=c.c.c"),
        ]);
        assert_eq!(token_from_headers(&same).unwrap(), Some("c.c.c"));
    }

    #[test]
    fn conflicting_or_empty_cookies_are_refused() {
        let two = headers(&[("cookie", "CF_Authorization=a.a.a; CF_Authorization=b.b.b")]);
        assert!(token_from_headers(&two).is_err());
        let empty = headers(&[("cookie", "CF_Authorization=")]);
        assert!(token_from_headers(&empty).is_err());
    }

    #[test]
    fn nothing_else_is_read() {
        let h = headers(&[
            ("cf-access-authenticated-user-email", "boss@example.com"),
            ("authorization", "Bearer a.a.a"),
            ("cookie", "cf_authorization=lower.case.name"),
        ]);
        assert_eq!(token_from_headers(&h).unwrap(), None);
    }
}
