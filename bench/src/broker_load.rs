//! interkom-broker-load: a bounded load generator for brokered logins.
//!
//! Each worker is a browser (cookies, no redirects followed) of one user.
//! It signs in at the upstream once (its password, not measured), then
//! repeats the brokered login the broker does for every Fachverfahren,
//! each time with the upstream's cookies only (a browser that has not been
//! at the broker yet, so the broker's own session does not short-cut it):
//! `/authorize` at the broker with `idp_hint`, the upstream's
//! `/authorize` (single sign-on there), the broker's `/broker/callback`
//! (code redemption at the upstream, ID-token validation, account lookup,
//! the step-up decision), and the code exchange at the broker's `/token`.
//! Loopback only; bounded in time; prints one JSON line.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::Parser;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Cli {
    /// The broker's issuer (loopback only).
    #[arg(long)]
    broker: String,
    /// The upstream's issuer (loopback only).
    #[arg(long)]
    upstream: String,
    #[arg(long)]
    idp: String,
    #[arg(long, default_value = "jan.meyer")]
    user: String,
    #[arg(long, default_value = "Hitzacker-Demo-2026!")]
    password: String,
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Measured seconds (at most 120).
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

const CLIENT: &str = "serviceportal";
const SECRET: &str = "serviceportal-demo-secret-0123456789abcdef";
const REDIRECT: &str = "http://localhost:9000/callback";

fn loopback(u: &str) -> Result<()> {
    let url = url::Url::parse(u)?;
    match url.host_str() {
        Some("127.0.0.1" | "localhost" | "[::1]") => Ok(()),
        _ => bail!("{u}: the load generator targets this machine only"),
    }
}

fn location(res: &reqwest::Response) -> Result<String> {
    if res.status() != reqwest::StatusCode::SEE_OTHER && res.status() != reqwest::StatusCode::FOUND
    {
        bail!("expected a redirect, got {}", res.status());
    }
    Ok(res
        .headers()
        .get("location")
        .context("no Location")?
        .to_str()?
        .to_owned())
}

fn query(u: &str, name: &str) -> Result<String> {
    url::Url::parse(u)?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("no {name} in {u}"))
}

fn hidden(html: &str, name: &str) -> Result<String> {
    let key = format!("name=\"{name}\" value=\"");
    let i = html.find(&key).context("field")? + key.len();
    let j = html[i..].find('"').context("field end")? + i;
    Ok(html[i..j].to_owned())
}

struct Worker {
    http: reqwest::Client,
    cli: std::sync::Arc<Cli>,
}

/// A browser that knows only the upstream's cookies of `from`.
fn with_upstream_cookies(from: &reqwest::cookie::Jar, upstream: &str) -> Result<reqwest::Client> {
    use reqwest::cookie::CookieStore;
    let url = url::Url::parse(upstream)?;
    let jar = reqwest::cookie::Jar::default();
    if let Some(v) = from.cookies(&url) {
        for c in v.to_str()?.split("; ") {
            jar.add_cookie_str(c, &url);
        }
    }
    browser(std::sync::Arc::new(jar))
}

fn browser(jar: std::sync::Arc<reqwest::cookie::Jar>) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar)
        .timeout(Duration::from_secs(30))
        .build()?)
}

impl Worker {
    fn authorize_url(&self) -> Result<(String, String)> {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let verifier = URL_SAFE_NO_PAD.encode(raw);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut u = url::Url::parse(&format!("{}/authorize", self.cli.broker))?;
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid")
            .append_pair("state", "b")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("idp_hint", &self.cli.idp);
        Ok((u.to_string(), verifier))
    }

    /// One brokered login; (total, callback) durations.
    async fn login(&self, first: bool) -> Result<(Duration, Duration)> {
        let t0 = Instant::now();
        let (url, verifier) = self.authorize_url()?;
        let to_upstream = location(&self.http.get(&url).send().await?)?;
        let res = self.http.get(&to_upstream).send().await?;
        let back = if first && res.status() == reqwest::StatusCode::OK {
            let page = res.text().await?;
            let form = [
                ("login_request", hidden(&page, "login_request")?),
                ("csrf_token", hidden(&page, "csrf_token")?),
                ("username", self.cli.user.clone()),
                ("password", self.cli.password.clone()),
            ];
            let res = self
                .http
                .post(format!("{}/login", self.cli.upstream))
                .form(&form)
                .send()
                .await?;
            location(&res)?
        } else {
            location(&res)?
        };
        let t1 = Instant::now();
        let done = location(&self.http.get(&back).send().await?)?;
        let callback = t1.elapsed();
        let code = query(&done, "code")?;
        let res = self
            .http
            .post(format!("{}/token", self.cli.broker))
            .basic_auth(CLIENT, Some(SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("token: {}", res.status());
        }
        res.bytes().await?;
        Ok((t0.elapsed(), callback))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    loopback(&cli.broker)?;
    loopback(&cli.upstream)?;
    if cli.duration == 0 || cli.duration > 120 || cli.workers == 0 || cli.workers > 256 {
        bail!("--duration 1..=120, --workers 1..=256");
    }
    let cli = std::sync::Arc::new(cli);
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_secs(2);
    let end = start + Duration::from_secs(cli.duration);
    for _ in 0..cli.workers {
        let cli = cli.clone();
        tasks.push(tokio::spawn(async move {
            let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
            let first = Worker {
                http: browser(jar.clone())?,
                cli: cli.clone(),
            };
            // The upstream's password once, not measured.
            first.login(true).await.context("first login")?;
            tokio::time::sleep_until(start.into()).await;
            let mut samples = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < end {
                let w = Worker {
                    http: with_upstream_cookies(&jar, &cli.upstream)?,
                    cli: cli.clone(),
                };
                match w.login(false).await {
                    Ok(s) => samples.push(s),
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("broker login failed: {e:#}");
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>((samples, errors))
        }));
    }
    let mut totals = Vec::new();
    let mut callbacks = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (samples, e) = t.await??;
        errors += e;
        for (a, b) in samples {
            totals.push(a);
            callbacks.push(b);
        }
    }
    totals.sort();
    callbacks.sort();
    let secs = cli.duration as f64;
    println!(
        "{}",
        serde_json::json!({
            "scenario": "brokered_login",
            "workers": cli.workers,
            "seconds": cli.duration,
            "logins": totals.len(),
            "errors": errors,
            "logins_per_s": (totals.len() as f64 / secs * 10.0).round() / 10.0,
            "login_ms": { "p50": percentile(&totals, 0.5), "p90": percentile(&totals, 0.9), "p99": percentile(&totals, 0.99) },
            "callback_ms": { "p50": percentile(&callbacks, 0.5), "p90": percentile(&callbacks, 0.9), "p99": percentile(&callbacks, 0.99) },
        })
    );
    Ok(())
}
