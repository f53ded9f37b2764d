//! jsonwebtoken's cryptography on `ring`: a complete [`CryptoProvider`] (every JWS algorithm
//! jsonwebtoken knows), installed process-wide by [`install_crypto_provider`].
//!
//! tenantry builds jsonwebtoken without either of its crypto backend features: `rust_crypto`
//! verifies an RS256 signature in ~125 µs (the pure-Rust `rsa` crate), `aws_lc_rs` needs cmake and
//! clang to build. ring, already in the tree through rustls, verifies the same signature in
//! ~20 µs. Its API is the one aws-lc-rs copied, so this module follows jsonwebtoken's own
//! `aws_lc` provider closely.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use ring::{digest, hmac};

/// jsonwebtoken's cryptography on ring: what [`install_crypto_provider`] installs.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_component_from_private_key,
        compute_digest,
    },
};

/// Installs [`RING_PROVIDER`] as jsonwebtoken's process-wide crypto provider, unless one is
/// installed already. Idempotent and cheap.
///
/// [`CloudflareVerifier::new`](super::CloudflareVerifier::new) and the `testing` token minter
/// call it. jsonwebtoken settles its provider at its first signature or key operation, so code
/// of your own that signs or verifies with jsonwebtoken before any verifier exists should call
/// this first (or install a provider of its own: tenantry's verifier then uses that one).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Err: a provider is already installed, which is all this function promises.
    ONCE.call_once(|| {
        let _ = RING_PROVIDER.install_default();
    });
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let bytes = key.as_bytes();
    let signer: Box<dyn JwtSigner> = match algorithm {
        Algorithm::HS256 => hmac_signer(*algorithm, hmac::HMAC_SHA256, bytes),
        Algorithm::HS384 => hmac_signer(*algorithm, hmac::HMAC_SHA384, bytes),
        Algorithm::HS512 => hmac_signer(*algorithm, hmac::HMAC_SHA512, bytes),
        Algorithm::ES256 => ecdsa_signer(*algorithm, &sig::ECDSA_P256_SHA256_FIXED_SIGNING, bytes)?,
        Algorithm::ES384 => ecdsa_signer(*algorithm, &sig::ECDSA_P384_SHA384_FIXED_SIGNING, bytes)?,
        Algorithm::RS256 => rsa_signer(*algorithm, &sig::RSA_PKCS1_SHA256, bytes)?,
        Algorithm::RS384 => rsa_signer(*algorithm, &sig::RSA_PKCS1_SHA384, bytes)?,
        Algorithm::RS512 => rsa_signer(*algorithm, &sig::RSA_PKCS1_SHA512, bytes)?,
        Algorithm::PS256 => rsa_signer(*algorithm, &sig::RSA_PSS_SHA256, bytes)?,
        Algorithm::PS384 => rsa_signer(*algorithm, &sig::RSA_PSS_SHA384, bytes)?,
        Algorithm::PS512 => rsa_signer(*algorithm, &sig::RSA_PSS_SHA512, bytes)?,
        Algorithm::EdDSA => Box::new(Ed25519Signer(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                .map_err(|_| ErrorKind::InvalidEddsaKey)?,
        )),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(signer)
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let check = match algorithm {
        Algorithm::HS256 => Check::Hmac(hmac::HMAC_SHA256),
        Algorithm::HS384 => Check::Hmac(hmac::HMAC_SHA384),
        Algorithm::HS512 => Check::Hmac(hmac::HMAC_SHA512),
        Algorithm::ES256 => Check::Public(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Check::Public(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Check::Public(&sig::ED25519),
        Algorithm::RS256 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA512),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let key = match check {
        Check::Hmac(alg) => VerifyKey::Hmac(hmac::Key::new(alg, key.try_get_as_bytes()?)),
        Check::Public(_) | Check::Rsa(_) => VerifyKey::Public(key.clone()),
    };
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        check,
        key,
    }))
}

/// How a signature of one algorithm is checked.
#[derive(Clone, Copy)]
enum Check {
    Hmac(hmac::Algorithm),
    /// ECDSA and EdDSA: the key is the raw public point.
    Public(&'static dyn sig::VerificationAlgorithm),
    /// RSA: the key is `n` and `e`, or a PKCS#1 `RSAPublicKey` DER.
    Rsa(&'static sig::RsaParameters),
}

enum VerifyKey {
    Hmac(hmac::Key),
    Public(DecodingKey),
}

struct RingVerifier {
    algorithm: Algorithm,
    check: Check,
    key: VerifyKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let outcome = match (&self.key, self.check) {
            (VerifyKey::Hmac(key), _) => hmac::verify(key, msg, signature),
            (VerifyKey::Public(key), Check::Rsa(params)) => match key.kind() {
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
                }
                DecodingKeyKind::SecretOrDer(der) => {
                    sig::UnparsedPublicKey::new(params, der).verify(msg, signature)
                }
            },
            (VerifyKey::Public(key), Check::Public(alg)) => {
                let bytes = key
                    .try_get_as_bytes()
                    .map_err(|_| signature::Error::new())?;
                sig::UnparsedPublicKey::new(alg, bytes).verify(msg, signature)
            }
            (VerifyKey::Public(_), Check::Hmac(_)) => unreachable!("HMAC keys are built above"),
        };
        outcome.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

struct HmacSigner(Algorithm, hmac::Key);

impl Signer<Vec<u8>> for HmacSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.1, msg).as_ref().to_vec())
    }
}

impl JwtSigner for HmacSigner {
    fn algorithm(&self) -> Algorithm {
        self.0
    }
}

fn hmac_signer(algorithm: Algorithm, alg: hmac::Algorithm, secret: &[u8]) -> Box<dyn JwtSigner> {
    Box::new(HmacSigner(algorithm, hmac::Key::new(alg, secret)))
}

struct RsaSigner(Algorithm, &'static dyn sig::RsaEncoding, sig::RsaKeyPair);

impl Signer<Vec<u8>> for RsaSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut signature = vec![0; self.2.public().modulus_len()];
        self.2
            .sign(self.1, &SystemRandom::new(), msg, &mut signature)
            .map_err(|_| signature::Error::new())?;
        Ok(signature)
    }
}

impl JwtSigner for RsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.0
    }
}

fn rsa_signer(
    algorithm: Algorithm,
    padding: &'static dyn sig::RsaEncoding,
    der: &[u8],
) -> Result<Box<dyn JwtSigner>> {
    Ok(Box::new(RsaSigner(algorithm, padding, rsa_key_pair(der)?)))
}

/// A PKCS#1 `RSAPrivateKey` (what jsonwebtoken extracts from a PEM), or a whole PKCS#8 document.
fn rsa_key_pair(der: &[u8]) -> Result<sig::RsaKeyPair> {
    sig::RsaKeyPair::from_der(der)
        .or_else(|_| sig::RsaKeyPair::from_pkcs8(der))
        .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()).into())
}

struct EcdsaSigner(Algorithm, sig::EcdsaKeyPair);

impl Signer<Vec<u8>> for EcdsaSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let signature = self
            .1
            .sign(&SystemRandom::new(), msg)
            .map_err(|_| signature::Error::new())?;
        Ok(signature.as_ref().to_vec())
    }
}

impl JwtSigner for EcdsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.0
    }
}

fn ecdsa_signer(
    algorithm: Algorithm,
    alg: &'static sig::EcdsaSigningAlgorithm,
    pkcs8: &[u8],
) -> Result<Box<dyn JwtSigner>> {
    let pair = sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    Ok(Box::new(EcdsaSigner(algorithm, pair)))
}

struct Ed25519Signer(sig::Ed25519KeyPair);

impl Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

// ---- key utilities (JWK conversion and thumbprints) --------------------------------------------

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = rsa_key_pair(der)?;
    let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((components.n, components.e))
}

/// `n` and `e` of a PKCS#1 `RSAPublicKey`: `SEQUENCE { INTEGER n, INTEGER e }` (ring reads such
/// keys but does not hand out their components).
fn rsa_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let invalid = || Error::from(ErrorKind::InvalidRsaKey("not a PKCS#1 RSAPublicKey".into()));
    let (sequence, rest) = der_element(der, 0x30).ok_or_else(invalid)?;
    let (n, after_n) = der_element(sequence, 0x02).ok_or_else(invalid)?;
    let (e, after_e) = der_element(after_n, 0x02).ok_or_else(invalid)?;
    if !rest.is_empty() || !after_e.is_empty() {
        return Err(invalid());
    }
    let unsigned = |int: &[u8]| match int {
        [0, tail @ ..] if !tail.is_empty() => tail.to_vec(),
        _ => int.to_vec(),
    };
    Ok((unsigned(n), unsigned(e)))
}

/// One DER element with tag `tag` at the start of `input`: its contents and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        short @ 0..=0x7f => (usize::from(short), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        0x82 => {
            let (len, rest) = rest.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([len[0], len[1]])), rest)
        }
        _ => return None, // RSA keys of up to 8192 bits need no longer form
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((contents, rest))
}

fn ec_components_from_private_key(
    pkcs8: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing, curve, coordinate_len) = match alg {
        Algorithm::ES256 => (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            EllipticCurve::P256,
            32,
        ),
        Algorithm::ES384 => (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            EllipticCurve::P384,
            48,
        ),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let pair = sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    match pair.public_key().as_ref() {
        [4, point @ ..] if point.len() == 2 * coordinate_len => {
            let (x, y) = point.split_at(coordinate_len);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn ed_component_from_private_key(pkcs8: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| ErrorKind::InvalidEddsaKey)?
            .public_key()
            .as_ref()
            .to_vec()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
    use jsonwebtoken::{decode, encode, Header, Validation};
    use serde_json::{json, Map, Value};

    /// The PKCS#8 DER of a PEM file (test key A of the `testing` kit, public and test-only).
    fn pem_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    const KEY_A: &str = include_str!("../../../testing/keys/test_key_a.pem");
    const KEY_A_N: &str = include_str!("../../../testing/keys/test_key_a.n");

    fn claims() -> Value {
        json!({"sub": "s", "exp": jsonwebtoken::get_current_timestamp() + 600})
    }

    fn round_trip(alg: Algorithm, encoding: &EncodingKey, decoding: &DecodingKey) {
        install_crypto_provider();
        let token = encode(&Header::new(alg), &claims(), encoding).unwrap();
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        let decoded = decode::<Map<String, Value>>(&token, decoding, &validation);
        assert_eq!(decoded.unwrap().claims["sub"], "s", "{alg:?}");
        // One flipped signature bit and the same token is refused.
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[0] ^= 1;
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes));
        let error = decode::<Map<String, Value>>(&forged, decoding, &validation).unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::InvalidSignature, "{alg:?}");
    }

    #[test]
    fn every_rsa_algorithm_signs_and_verifies() {
        let private = EncodingKey::from_rsa_der(&pem_der(KEY_A));
        let public = DecodingKey::from_rsa_components(KEY_A_N.trim(), "AQAB").unwrap();
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            round_trip(alg, &private, &public);
        }
        // The same key as a PKCS#1 DER (`DecodingKey::from_rsa_der`, as from a PEM).
        let (n, e) = rsa_components_from_private_key(&pem_der(KEY_A)).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(&n), KEY_A_N.trim());
        assert_eq!(e, [1, 0, 1]);
        let der = pkcs1_public_der(&n, &e);
        assert_eq!(rsa_components_from_public_key(&der).unwrap(), (n, e));
        round_trip(Algorithm::RS256, &private, &DecodingKey::from_rsa_der(&der));
        assert!(rsa_components_from_public_key(&der[..der.len() - 1]).is_err());
    }

    /// `SEQUENCE { INTEGER n, INTEGER e }`, for a 2048-bit `n`.
    fn pkcs1_public_der(n: &[u8], e: &[u8]) -> Vec<u8> {
        let mut n_int = vec![0x02, 0x82];
        n_int.extend_from_slice(&u16::try_from(n.len() + 1).unwrap().to_be_bytes());
        n_int.push(0);
        n_int.extend_from_slice(n);
        let mut body = n_int;
        body.extend_from_slice(&[0x02, u8::try_from(e.len()).unwrap()]);
        body.extend_from_slice(e);
        let mut der = vec![0x30, 0x82];
        der.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        der.extend_from_slice(&body);
        der
    }

    #[test]
    fn hmac_ecdsa_and_eddsa_sign_and_verify() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            round_trip(
                alg,
                &EncodingKey::from_secret(b"secret"),
                &DecodingKey::from_secret(b"secret"),
            );
        }
        let rng = SystemRandom::new();
        for (alg, signing) in [
            (Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            (Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = sig::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            let public = DecodingKey::from_ec_der(pair.public_key().as_ref());
            round_trip(alg, &EncodingKey::from_ec_der(pkcs8.as_ref()), &public);
            let jwk = Jwk::from_encoding_key(&EncodingKey::from_ec_der(pkcs8.as_ref()), alg);
            assert!(matches!(
                jwk.unwrap().algorithm,
                AlgorithmParameters::EllipticCurve(_)
            ));
        }
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = DecodingKey::from_ed_der(pair.public_key().as_ref());
        round_trip(
            Algorithm::EdDSA,
            &EncodingKey::from_ed_der(pkcs8.as_ref()),
            &public,
        );
        assert_eq!(
            ed_component_from_private_key(pkcs8.as_ref(), &EllipticCurve::Ed25519).unwrap(),
            pair.public_key().as_ref()
        );
    }

    #[test]
    fn keys_of_another_family_are_refused() {
        install_crypto_provider();
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        let rsa = DecodingKey::from_rsa_components(KEY_A_N.trim(), "AQAB").unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        assert!(decode::<Map<String, Value>>(&token, &rsa, &validation).is_err());
        assert!(new_signer(&Algorithm::RS256, &EncodingKey::from_secret(b"s")).is_err());
    }

    #[test]
    fn thumbprints_use_ring_digests() {
        install_crypto_provider();
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "RSA", "n": KEY_A_N.trim(), "e": "AQAB"
        }))
        .unwrap();
        let expected = digest::digest(
            &digest::SHA256,
            format!(r#"{{"e":"AQAB","kty":"RSA","n":"{}"}}"#, KEY_A_N.trim()).as_bytes(),
        );
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            URL_SAFE_NO_PAD.encode(expected.as_ref())
        );
    }
}
