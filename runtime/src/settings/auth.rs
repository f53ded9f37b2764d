//! The [`Authenticator`] that the settings' authentication mode asks for.

use super::{AuthMode, Settings, SettingsError};
use crate::identity::auth::cloudflare::CloudflareVerifier;
use crate::identity::auth::{dev, Authenticator};

impl Authenticator {
    /// The authenticator `settings` ask for. Dev mode logs a loud warning.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        Ok(match &settings.auth {
            AuthMode::Cloudflare(config) => {
                Authenticator::Cloudflare(CloudflareVerifier::new(config.clone()).map_err(|e| {
                    SettingsError {
                        variable: "TENANTRY_CF_TEAM_DOMAIN",
                        problem: e.to_string(),
                    }
                })?)
            }
            AuthMode::Dev { user_email } => {
                dev::warn(user_email);
                Authenticator::Dev {
                    email: user_email.clone(),
                }
            }
            AuthMode::TrustedHeader { proxies } => Authenticator::TrustedHeader {
                proxies: proxies.clone(),
            },
        })
    }
}
