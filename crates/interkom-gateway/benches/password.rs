//! What one argon2id verification costs with the default parameters
//! (m = 19 MiB, t = 2, p = 1): the ceiling for password logins per core.
//!
//! Run: `cargo bench -p interkom-gateway --bench password`

#![allow(clippy::expect_used)]

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let params = Params::new(19 * 1024, 2, 1, None).expect("params");
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = argon
        .hash_password(b"Kreis-Demo-2026!", &salt)
        .expect("hash")
        .to_string();
    let parsed = PasswordHash::new(&hash).expect("phc");
    let mut g = c.benchmark_group("argon2id");
    g.sample_size(30);
    g.bench_function("verify m=19MiB t=2 p=1", |b| {
        b.iter(|| {
            Argon2::default()
                .verify_password(black_box(b"Kreis-Demo-2026!"), &parsed)
                .expect("matches")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
