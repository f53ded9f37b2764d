//! jsonwebtoken's cryptography on `ring`, for the one algorithm tenantry accepts: RS256
//! signatures, verified under a key's `n` and `e` as Cloudflare publishes them. Installed
//! process-wide by [`install_crypto_provider`].
//!
//! tenantry builds jsonwebtoken without either of its crypto backend features: `rust_crypto`
//! verifies an RS256 signature in ~125 µs (the pure-Rust `rsa` crate), `aws_lc_rs` needs cmake and
//! clang to build. ring, already in the tree through rustls, verifies the same signature in
//! ~20 µs. tenantry signs nothing and converts no keys, so the provider refuses every signer and
//! key conversion, and every other algorithm (the test kit signs its tokens with ring itself).

use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};

/// jsonwebtoken's cryptography on ring, RS256 verification only: what
/// [`install_crypto_provider`] installs.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |_, _| Err(refused()),
    verifier_factory: rs256_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(refused()),
        rsa_pub_components_from_public_key: |_| Err(refused()),
        ec_pub_components_from_private_key: |_, _| Err(refused()),
        ed_pub_components_from_private_key: |_, _| Err(refused()),
        compute_digest: |_, _| Err(refused()),
    },
};

/// Installs [`RING_PROVIDER`] as jsonwebtoken's process-wide crypto provider, unless one is
/// installed already. Idempotent and cheap.
///
/// [`CloudflareVerifier::new`](super::CloudflareVerifier::new) calls it. jsonwebtoken settles
/// its provider at its first signature or key operation, so code of your own that signs or
/// verifies with jsonwebtoken before any verifier exists should install the provider it needs
/// first (tenantry's verifier then uses that one, and its RS256 check still applies).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Err: a provider is already installed, which is all this function promises.
    ONCE.call_once(|| {
        let _ = RING_PROVIDER.install_default();
    });
}

fn refused() -> Error {
    ErrorKind::InvalidAlgorithm.into()
}

fn rs256_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match (algorithm, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { .. }) => {
            Ok(Box::new(Rs256(key.clone())))
        }
        (Algorithm::RS256, _) => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(refused()),
    }
}

/// An RS256 check under one key's `n` and `e`.
struct Rs256(DecodingKey);

impl Verifier<Vec<u8>> for Rs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let DecodingKeyKind::RsaModulusExponent { n, e } = self.0.kind() else {
            return Err(signature::Error::new()); // refused by `rs256_verifier`
        };
        RsaPublicKeyComponents { n, e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// An RS256 signature under test key A (`testing/keys`), for the tests of this folder.
#[cfg(test)]
pub(super) fn sign_rs256_with_key_a(input: &[u8]) -> Vec<u8> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let pem = include_str!("../../../testing/keys/test_key_a.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&STANDARD.decode(body).unwrap()).unwrap();
    let mut signature = vec![0; pair.public().modulus_len()];
    let rng = ring::rand::SystemRandom::new();
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &rng,
        input,
        &mut signature,
    )
    .unwrap();
    signature
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jsonwebtoken::{crypto, EncodingKey};

    const KEY_A_N: &str = include_str!("../../../testing/keys/test_key_a.n");

    fn key_a() -> DecodingKey {
        DecodingKey::from_rsa_components(KEY_A_N.trim(), "AQAB").unwrap()
    }

    #[test]
    fn an_rs256_signature_verifies_and_one_flipped_bit_does_not() {
        install_crypto_provider();
        let mut signature = sign_rs256_with_key_a(b"header.claims");
        let verify = |signature: &[u8]| {
            crypto::verify(
                &URL_SAFE_NO_PAD.encode(signature),
                b"header.claims",
                &key_a(),
                Algorithm::RS256,
            )
        };
        assert!(verify(&signature).unwrap());
        signature[0] ^= 1;
        assert!(!verify(&signature).unwrap_or(false));
    }

    #[test]
    fn every_other_algorithm_key_and_signer_is_refused() {
        install_crypto_provider();
        let signature = URL_SAFE_NO_PAD.encode(sign_rs256_with_key_a(b"m"));
        for alg in [
            Algorithm::RS384,
            Algorithm::PS256,
            Algorithm::HS256,
            Algorithm::ES256,
        ] {
            assert!(
                crypto::verify(&signature, b"m", &key_a(), alg).is_err(),
                "{alg:?}"
            );
        }
        let secret = DecodingKey::from_secret(b"secret");
        assert!(crypto::verify(&signature, b"m", &secret, Algorithm::RS256).is_err());
        let hmac = EncodingKey::from_secret(b"secret");
        assert!(crypto::sign(b"m", &hmac, Algorithm::HS256).is_err());
    }
}
