//! interkom-rsa-limit: how many RSA-2048 signatures (PKCS#1 v1.5, SHA-256,
//! the RustCrypto `rsa` crate that signs interkom's SAML messages) this
//! machine makes per second on N threads — the ceiling of SAML logins,
//! which sign twice (Response and Assertion). Prints one JSON line.

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let signer = Arc::new(SigningKey::<Sha256>::new(key));
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..cli.threads)
        .map(|i| {
            let (signer, done, count) = (signer.clone(), done.clone(), count.clone());
            std::thread::spawn(move || {
                let mut msg = [0u8; 64];
                msg[0] = i as u8;
                while !done.load(Ordering::Relaxed) {
                    msg[1] = msg[1].wrapping_add(1);
                    let _ = signer.sign(&msg);
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
        "{{\"threads\":{},\"signatures\":{n},\"seconds\":{secs:.3},\"per_second\":{:.1}}}",
        cli.threads,
        n as f64 / secs
    );
    Ok(())
}
