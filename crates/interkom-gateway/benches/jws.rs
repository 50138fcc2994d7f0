//! Token signing and verification on interkom's own path (parsed keys kept
//! in memory): what one access token or ID token costs.
//!
//! Run: `cargo bench -p interkom-gateway --bench jws`

#![allow(clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use interkom_gateway::{Alg, Signer};
use serde_json::json;

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://login.luechow-dannenberg.example",
        "sub": "2f1c7a52-3e0b-4c1e-9a57-5a0f2d7e4b11",
        "aud": "serviceportal",
        "client_id": "serviceportal",
        "exp": 1_900_000_300_i64,
        "iat": 1_900_000_000_i64,
        "jti": "0b7d2c6e-8f9a-4e3b-a1c2-d3e4f5a6b7c8",
        "scope": "openid profile email",
        "auth_time": 1_900_000_000_i64,
        "acr": "urn:interkom:loa:low",
        "sid": "Jr3x8x2W8m3mRk6d1q0kVg",
        "tenant": "hitzacker-elbe",
        "tenant_path": ["lk-luechow-dannenberg", "sg-elbtalaue", "hitzacker-elbe"],
        "level": "gemeinde",
        "roles": ["sachbearbeitung"],
    })
}

fn bench(c: &mut Criterion) {
    let claims = claims();
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
        let signer = Signer::generate(alg).expect("key generation");
        let token = signer.sign("at+jwt", &claims).expect("signing");
        c.bench_function(&format!("sign/{}", alg.as_str()), |b| {
            b.iter(|| signer.sign("at+jwt", black_box(&claims)).expect("signing"))
        });
        c.bench_function(&format!("verify/{}", alg.as_str()), |b| {
            b.iter(|| signer.verify(black_box(&token), "at+jwt").expect("valid"))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
