//! Keys generated here and tokens signed with them (shared by the tests and the benchmarks).

#![allow(dead_code)]

use aws_lc_rs::{
    encoding::{AsDer, PublicKeyX509Der},
    rsa::KeySize,
    signature::{self, KeyPair},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A key that signs tokens, with its public half as PEM and as a JWK.
pub struct Signer {
    pub alg: Algorithm,
    pub kid: String,
    encoding: EncodingKey,
    /// SPKI PEM of the public key (empty for HMAC).
    pub public_pem: String,
}

impl Signer {
    pub fn rsa(kid: &str) -> Self {
        let pair = signature::RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let private = pem(
            "PRIVATE KEY",
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .unwrap()
                .as_ref(),
        );
        let public: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        Self {
            alg: Algorithm::RS256,
            kid: kid.into(),
            encoding: EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
            public_pem: pem("PUBLIC KEY", public.as_ref()),
        }
    }

    pub fn ec(kid: &str) -> Self {
        let pair =
            signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let private = pem("PRIVATE KEY", pair.to_pkcs8v1().unwrap().as_ref());
        let public: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        Self {
            alg: Algorithm::ES256,
            kid: kid.into(),
            encoding: EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
            public_pem: pem("PUBLIC KEY", public.as_ref()),
        }
    }

    pub fn ed(kid: &str) -> Self {
        let pair = signature::Ed25519KeyPair::generate().unwrap();
        let private = pem("PRIVATE KEY", pair.to_pkcs8().unwrap().as_ref());
        let public: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        Self {
            alg: Algorithm::EdDSA,
            kid: kid.into(),
            encoding: EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
            public_pem: pem("PUBLIC KEY", public.as_ref()),
        }
    }

    pub fn hmac(secret: &[u8]) -> Self {
        Self {
            alg: Algorithm::HS256,
            kid: "hmac".into(),
            encoding: EncodingKey::from_secret(secret),
            public_pem: String::new(),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).unwrap()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims valid for an hour for `sub`, with the usual issuer and audience.
pub fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iss": ISSUER, "aud": "api", "exp": now() + 3600, "iat": now(), "scope": "orders:read" })
}

pub const ISSUER: &str = "https://idp.test/";
