//! interkom-rsa-limit: how many RSA-2048 signatures (PKCS#1 v1.5, SHA-256,
//! the RustCrypto `rsa` crate that signs interkom's SAML messages) — or,
//! with `--op decrypt`, RSA-OAEP (SHA-256) decryptions of a content key, as
//! interkom does for every encrypted assertion — this machine makes per
//! second on N threads: the ceiling of SAML logins (the identity provider
//! signs twice per login, the service provider decrypts once). Prints one
//! JSON line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::Signer;
use sha2::Sha256;

#[derive(Parser)]
#[command(
    name = "interkom-rsa-limit",
    about = "RSA-2048 signatures per second on this machine"
)]
struct Cli {
    /// Signing threads (the cores a node has).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Measured seconds (at most 60).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    seconds: u64,
    /// `sign` (PKCS#1 v1.5, SHA-256) or `decrypt` (RSA-OAEP, SHA-256).
    #[arg(long, default_value = "sign", value_parser = ["sign", "decrypt"])]
    op: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let decrypt = cli.op == "decrypt";
    let wrapped = Arc::new(rsa::RsaPublicKey::from(&key).encrypt(
        &mut rand::thread_rng(),
        rsa::Oaep::new::<Sha256>(),
        &[7u8; 32],
    )?);
    let private = Arc::new(key.clone());
    let signer = Arc::new(SigningKey::<Sha256>::new(key));
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..cli.threads)
        .map(|i| {
            let (signer, done, count) = (signer.clone(), done.clone(), count.clone());
            let (private, wrapped) = (private.clone(), wrapped.clone());
            std::thread::spawn(move || {
                let mut msg = [0u8; 64];
                msg[0] = i as u8;
                while !done.load(Ordering::Relaxed) {
                    if decrypt {
                        let _ = private.decrypt(rsa::Oaep::new::<Sha256>(), &wrapped);
                    } else {
                        msg[1] = msg[1].wrapping_add(1);
                        let _ = signer.sign(&msg);
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(cli.seconds));
    done.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed);
    println!(
        "{{\"op\":\"{}\",\"threads\":{},\"operations\":{n},\"seconds\":{secs:.3},\"per_second\":{:.1}}}",
        cli.op,
        cli.threads,
        n as f64 / secs
    );
    Ok(())
}
