//! [`CloudflareConfig`]: the pinned issuer, audience and certs URL, the key cache's timings and
//! the size of the verified-token cache.

use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;

/// Settings of a [`CloudflareVerifier`](super::CloudflareVerifier).
///
/// [`CloudflareConfig::new`] checks the team domain and the audience and fills in the defaults;
/// the timing fields are public so tests can shorten them:
///
/// ```
/// use std::time::Duration;
/// use tenantry_runtime::identity::auth::cloudflare::CloudflareConfig;
///
/// let config = CloudflareConfig {
///     refetch_cooldown: Duration::from_secs(10),
///     ..CloudflareConfig::new("acme.cloudflareaccess.com", "4714c1358e65fe4b408ad6d432a5f878")?
/// };
/// assert_eq!(config.issuer(), "https://acme.cloudflareaccess.com");
/// assert_eq!(config.certs_url(), "https://acme.cloudflareaccess.com/cdn-cgi/access/certs");
/// # Ok::<(), tenantry_runtime::identity::auth::cloudflare::CloudflareConfigError>(())
/// ```
///
/// The issuer and the certs URL are pinned here and never taken from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudflareConfig {
    /// The team domain, a host name such as `acme.cloudflareaccess.com` (no scheme, no path).
    pub team_domain: String,
    /// The Access application's AUD tag; a token's `aud` must contain it.
    pub audience: String,
    /// Where to fetch the signing keys; `None` means `https://<team domain>/cdn-cgi/access/certs`.
    /// Plain `http://` is accepted only for loopback hosts (a local test server).
    pub certs_url: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (default 30 s).
    pub leeway: Duration,
    /// Longest wait for one fetch of the certs document, body included (default 5 s).
    pub fetch_timeout: Duration,
    /// Largest certs document accepted, in bytes (default 64 KiB).
    pub max_body: usize,
    /// Least time between two fetches caused by unknown key ids (default 30 s).
    pub refetch_cooldown: Duration,
    /// How long keys keep working when the certs endpoint stops answering (default 24 h).
    pub max_staleness: Duration,
    /// How long a fetched key set is used before it is refreshed (default 1 h).
    pub cache_ttl: Duration,
    /// Most verified tokens remembered, so that a token seen again skips the signature check
    /// (default [`DEFAULT_TOKEN_CACHE_CAPACITY`]; 0 turns the cache off and every token is
    /// verified). An entry is ~300 bytes; it lives until the token's `exp` (plus `leeway`) at
    /// most, and only while the key that verified it is in the key set.
    pub token_cache_capacity: usize,
}

/// Default of [`CloudflareConfig::token_cache_capacity`]: 10,000 tokens, a few MB.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 10_000;

/// A [`CloudflareConfig`] that cannot be used; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CloudflareConfigError {
    /// The team domain is empty.
    #[error("the Cloudflare team domain is empty (expected a host name like `acme.cloudflareaccess.com`)")]
    EmptyTeamDomain,
    /// The team domain starts with a scheme such as `https://`.
    #[error("the Cloudflare team domain `{0}` must be a host name without a scheme: drop the `https://`")]
    TeamDomainHasScheme(String),
    /// The team domain carries a path, query or fragment.
    #[error(
        "the Cloudflare team domain `{0}` must be a host name without a path (no `/`, `?` or `#`)"
    )]
    TeamDomainHasPath(String),
    /// The team domain is not a valid DNS host name.
    #[error("the Cloudflare team domain `{domain}` is not a host name: {reason}")]
    InvalidTeamDomain {
        /// The value given.
        domain: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The audience tag is empty or contains whitespace.
    #[error("the Cloudflare Access audience tag must be non-empty and contain no whitespace")]
    InvalidAudience,
    /// The certs URL is not an `https://` URL (or `http://` to a loopback host).
    #[error("the Cloudflare certs URL `{url}` is not usable: {reason}")]
    InvalidCertsUrl {
        /// The value given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A timing or size setting is zero.
    #[error("the Cloudflare setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client for the Cloudflare certs endpoint: {0}")]
    HttpClient(String),
}

impl CloudflareConfig {
    /// Settings for `team_domain` (e.g. `acme.cloudflareaccess.com`, lower-cased here) and the
    /// application's AUD tag, with the default timings.
    pub fn new(
        team_domain: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, CloudflareConfigError> {
        let config = CloudflareConfig {
            team_domain: team_domain.into().trim().to_ascii_lowercase(),
            audience: audience.into().trim().to_owned(),
            certs_url: None,
            leeway: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
            refetch_cooldown: Duration::from_secs(30),
            max_staleness: Duration::from_secs(24 * 60 * 60),
            cache_ttl: Duration::from_secs(60 * 60),
            token_cache_capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
        };
        config.validate()?;
        Ok(config)
    }

    /// The same settings fetching keys from `url` instead of the team domain's certs endpoint.
    pub fn with_certs_url(mut self, url: impl Into<String>) -> Result<Self, CloudflareConfigError> {
        self.certs_url = Some(url.into());
        self.validate()?;
        Ok(self)
    }

    /// The only accepted `iss`: `https://<team domain>`, without a trailing slash.
    pub fn issuer(&self) -> String {
        format!("https://{}", self.team_domain.to_ascii_lowercase())
    }

    /// The URL the signing keys are fetched from.
    pub fn certs_url(&self) -> String {
        match &self.certs_url {
            Some(url) => url.clone(),
            None => format!("{}/cdn-cgi/access/certs", self.issuer()),
        }
    }

    /// Checks every field; [`CloudflareVerifier::new`](super::CloudflareVerifier::new) calls it
    /// again, so fields changed after [`CloudflareConfig::new`] are checked too.
    pub fn validate(&self) -> Result<(), CloudflareConfigError> {
        check_team_domain(&self.team_domain)?;
        if self.audience.is_empty() || self.audience.chars().any(char::is_whitespace) {
            return Err(CloudflareConfigError::InvalidAudience);
        }
        if let Some(url) = &self.certs_url {
            check_certs_url(url)?;
        }
        let durations = [
            ("fetch_timeout", self.fetch_timeout),
            ("refetch_cooldown", self.refetch_cooldown),
            ("max_staleness", self.max_staleness),
            ("cache_ttl", self.cache_ttl),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(CloudflareConfigError::Zero(name));
        }
        if self.max_body == 0 {
            return Err(CloudflareConfigError::Zero("max_body"));
        }
        Ok(())
    }

    /// Whether the certs URL points at this machine (then proxies are bypassed).
    pub(crate) fn certs_url_is_loopback(&self) -> bool {
        url::Url::parse(&self.certs_url())
            .ok()
            .is_some_and(|url| is_loopback(&url))
    }
}

fn check_team_domain(domain: &str) -> Result<(), CloudflareConfigError> {
    let invalid = |reason| CloudflareConfigError::InvalidTeamDomain {
        domain: domain.to_owned(),
        reason,
    };
    if domain.is_empty() {
        return Err(CloudflareConfigError::EmptyTeamDomain);
    }
    if domain.contains("://") {
        return Err(CloudflareConfigError::TeamDomainHasScheme(
            domain.to_owned(),
        ));
    }
    if domain.contains(['/', '?', '#']) {
        return Err(CloudflareConfigError::TeamDomainHasPath(domain.to_owned()));
    }
    if domain.contains(':') {
        return Err(invalid("it must not carry a port"));
    }
    if domain.len() > 253 {
        return Err(invalid("it is longer than 253 characters"));
    }
    if !domain.contains('.') {
        return Err(invalid(
            "it needs at least two labels, like `acme.cloudflareaccess.com`",
        ));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(invalid(
                "it has an empty label (two dots in a row, or a dot at an end)",
            ));
        }
        if label.len() > 63 {
            return Err(invalid("a label is longer than 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid("only letters, digits, `-` and `.` are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label starts or ends with `-`"));
        }
    }
    Ok(())
}

fn check_certs_url(raw: &str) -> Result<(), CloudflareConfigError> {
    let invalid = |reason| CloudflareConfigError::InvalidCertsUrl {
        url: raw.to_owned(),
        reason,
    };
    let url = url::Url::parse(raw).map_err(|_| invalid("it is not a URL"))?;
    if url.host().is_none() {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not carry credentials"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(invalid(
            "plain http is allowed only for a loopback host; use https",
        )),
        _ => Err(invalid("the scheme must be https")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(domain: &str) -> CloudflareConfigError {
        CloudflareConfig::new(domain, "aud").unwrap_err()
    }

    #[test]
    fn derives_issuer_and_certs_url() {
        let config = CloudflareConfig::new("Acme.CloudflareAccess.com", "tag").unwrap();
        assert_eq!(config.issuer(), "https://acme.cloudflareaccess.com");
        assert_eq!(
            config.certs_url(),
            "https://acme.cloudflareaccess.com/cdn-cgi/access/certs"
        );
        assert_eq!(config.leeway, Duration::from_secs(30));
        assert_eq!(config.refetch_cooldown, Duration::from_secs(30));
        assert_eq!(config.token_cache_capacity, 10_000);
    }

    #[test]
    fn team_domain_errors_name_the_problem() {
        assert_eq!(err(""), CloudflareConfigError::EmptyTeamDomain);
        assert!(matches!(
            err("https://acme.cloudflareaccess.com"),
            CloudflareConfigError::TeamDomainHasScheme(_)
        ));
        assert!(matches!(
            err("acme.cloudflareaccess.com/cdn-cgi"),
            CloudflareConfigError::TeamDomainHasPath(_)
        ));
        for bad in [
            "acme",
            "acme..com",
            "acme.com.",
            "ac me.com",
            "-a.com",
            "a.com:443",
        ] {
            assert!(
                matches!(err(bad), CloudflareConfigError::InvalidTeamDomain { .. }),
                "{bad}"
            );
        }
        let message = err("https://acme.cloudflareaccess.com").to_string();
        assert!(message.contains("without a scheme"), "{message}");
    }

    #[test]
    fn audience_must_be_set() {
        assert_eq!(
            CloudflareConfig::new("acme.cloudflareaccess.com", " ").unwrap_err(),
            CloudflareConfigError::InvalidAudience
        );
    }

    #[test]
    fn certs_url_needs_https_unless_loopback() {
        let base = CloudflareConfig::new("acme.cloudflareaccess.com", "tag").unwrap();
        for ok in [
            "https://keys.example.com/certs",
            "http://127.0.0.1:8080/cdn-cgi/access/certs",
            "http://localhost:1/x",
            "http://[::1]:1/x",
        ] {
            base.clone().with_certs_url(ok).unwrap();
        }
        for bad in [
            "http://keys.example.com/certs",
            "ftp://127.0.0.1/x",
            "not a url",
        ] {
            assert!(matches!(
                base.clone().with_certs_url(bad).unwrap_err(),
                CloudflareConfigError::InvalidCertsUrl { .. }
            ));
        }
    }

    #[test]
    fn zero_timings_are_refused() {
        let config = CloudflareConfig {
            fetch_timeout: Duration::ZERO,
            ..CloudflareConfig::new("acme.cloudflareaccess.com", "tag").unwrap()
        };
        assert_eq!(
            config.validate().unwrap_err(),
            CloudflareConfigError::Zero("fetch_timeout")
        );
    }
}
