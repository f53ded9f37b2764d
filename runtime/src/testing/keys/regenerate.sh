#!/usr/bin/env bash
# Regenerates the TEST-ONLY RSA key pairs of `tenantry::testing` (never use them anywhere else).
#
# For each of a, b, c it writes: the private key (`test_key_X.pem`, PKCS#8), its public key
# (`test_pub_X.pem`), a self-signed certificate (`test_cert_X.pem`, served as Cloudflare's
# `public_cert`), and the JWK modulus `n` as unpadded base64url (`test_key_X.n`), so that tests
# never generate or parse RSA keys to build a key set. The exponent of every key is 65537 (`AQAB`).
set -euo pipefail
cd "$(dirname "$0")"
for k in a b c; do
    openssl genrsa -out "test_key_$k.pem" 2048 2>/dev/null
    openssl rsa -in "test_key_$k.pem" -pubout -out "test_pub_$k.pem" 2>/dev/null
    openssl req -new -x509 -key "test_key_$k.pem" -out "test_cert_$k.pem" -days 36500 \
        -subj "/CN=tenantry TEST ONLY key $k - never trust" 2>/dev/null
    openssl rsa -in "test_key_$k.pem" -noout -modulus | sed 's/^Modulus=//' | xxd -r -p \
        | base64 -w0 | tr '+/' '-_' | tr -d '=\n' > "test_key_$k.n"
    chmod 644 "test_key_$k.pem"
    openssl rsa -in "test_key_$k.pem" -noout -text 2>/dev/null | grep -q 'publicExponent: 65537'
done
