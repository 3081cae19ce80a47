//! JWT verification cost per algorithm, and the verified-token cache hit.
//!
//! `cargo bench --bench auth`

#[path = "../tests/integration/signer.rs"]
mod signer;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey};
use proxyfn::auth::{
    config::{JwtKeySource, JwtSettings, KeyLocation},
    jwt::JwtProvider,
};
use signer::{ISSUER, Signer, claims};

fn provider(alg: Algorithm, key: DecodingKey) -> JwtProvider {
    let settings = JwtSettings {
        name: "bench".into(),
        keys: JwtKeySource::Static(key),
        issuer: Some(ISSUER.into()),
        audience: vec!["api".into()],
        algorithms: vec![alg],
        leeway: Duration::from_secs(30),
        forward_claims: vec![],
        forward_token: true,
        location: KeyLocation::Bearer,
        jwks_cache: Duration::from_secs(300),
        jwks_min_refresh: Duration::from_secs(30),
    };
    JwtProvider::new(&settings, reqwest::Client::new())
}

fn verification(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let secret = b"a-benchmark-secret-that-is-long-enough";
    let mut group = c.benchmark_group("jwt_verify");
    for (name, signer) in [
        ("HS256", Signer::hmac(secret)),
        ("RS256", Signer::rsa("rsa")),
        ("ES256", Signer::ec("ec")),
    ] {
        let pem = signer.public_pem.as_bytes();
        let key = match signer.alg {
            Algorithm::HS256 => DecodingKey::from_secret(secret),
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem).unwrap(),
            _ => DecodingKey::from_ec_pem(pem).unwrap(),
        };
        let provider = provider(signer.alg, key);
        let token = signer.sign(&claims("bench-user"));
        group.bench_function(format!("{name}/uncached"), |b| {
            b.iter(|| runtime.block_on(provider.verify_uncached(&token)).unwrap())
        });
        if name == "RS256" {
            runtime.block_on(provider.verify(&token)).unwrap();
            group.bench_function("cached_hit", |b| {
                b.iter(|| runtime.block_on(provider.verify(&token)).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
