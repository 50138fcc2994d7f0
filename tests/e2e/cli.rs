//! The CLI, as the real binary, against the suite's database.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;

struct Cli {
    database_url: String,
    kek: String,
}

impl Cli {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        self.run_with(args, stdin, &[])
    }

    fn run_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_interkom"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(repo_root())
            .env("INTERKOM_CONFIG", repo_root().join("config/interkom.toml"))
            .env("INTERKOM_DATABASE_URL", &self.database_url)
            .env("INTERKOM_KEY_ENCRYPTION_KEY", &self.kek)
            .env("INTERKOM_AUDIT__CHECKPOINT_KEY", checkpoint_key())
            .env("INTERKOM_DEMO__ENABLED", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test]
async fn cli_manages_tenants_users_clients_keys_and_audit() {
    let cli = Cli {
        database_url: fresh_database().await,
        kek: interkom_directory::MasterKey::generate().to_base64(),
    };
    let (code, out, _) = cli.run(&["--help"], None);
    assert_eq!(code, 0);
    for cmd in [
        "serve", "migrate", "tenant", "user", "client", "keys", "audit",
    ] {
        assert!(out.contains(cmd), "--help lists {cmd}");
    }
    let (code, _, err) = cli.run(&["migrate"], None);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = cli.run(&["tenant", "list"], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 31, "the whole demo county");
    assert!(out
        .lines()
        .next()
        .unwrap()
        .starts_with("lk-luechow-dannenberg\tkreis"));
    assert!(out.contains("    hitzacker-elbe\tgemeinde\tHitzacker (Elbe), Stadt"));

    let (code, out, err) = cli.run(
        &[
            "user",
            "add",
            "--tenant",
            "gorleben",
            "--username",
            "eva.koch",
            "--password-stdin",
            "--role",
            "sachbearbeitung",
        ],
        Some("Gorleben-Test-2026!\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("user eva.koch created"));
    // Unknown tenant and duplicate user are clear errors.
    let (code, _, err) = cli.run(
        &[
            "user",
            "add",
            "--tenant",
            "atlantis",
            "--username",
            "x.y",
            "--password-stdin",
        ],
        Some("Password-123456\n"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown tenant"), "{err}");
    let (code, _, err) = cli.run(
        &[
            "user",
            "add",
            "--tenant",
            "gorleben",
            "--username",
            "eva.koch",
            "--password-stdin",
        ],
        Some("Password-123456\n"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("taken"), "{err}");

    let (code, out, err) = cli.run(
        &[
            "client",
            "add",
            "--id",
            "bauantrag",
            "--tenant",
            "lk-luechow-dannenberg",
            "--name",
            "Bauantrag",
            "--redirect-uri",
            "http://127.0.0.1:9300/cb",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--post-logout-redirect-uri",
            "http://127.0.0.1:9300/",
            // The Kreis's own Fachverfahren: no consent page.
            "--first-party",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("a generated secret is printed once")
        .to_owned();
    assert!(secret.len() >= 43, "256 bits of entropy");
    let (code, _, err) = cli.run(
        &[
            "client",
            "add",
            "--id",
            "spa",
            "--tenant",
            "gorleben",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1:9301/cb",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli.run(
        &[
            "client",
            "add",
            "--id",
            "machine",
            "--tenant",
            "gorleben",
            "--secret-stdin",
            "--grant",
            "client_credentials",
            "--scope",
            "roles",
        ],
        Some("machine-secret-from-stdin-0123456789abcdef\n"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli.run(
        &[
            "client",
            "add",
            "--id",
            "bad",
            "--tenant",
            "gorleben",
            "--redirect-uri",
            "http://example.org/cb",
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("loopback"), "{err}");

    // A server on the same database: the CLI's user and clients work.
    let s = TestServer::start_on(cli.database_url.clone(), Some(cli.kek.clone()), |c| {
        c.demo.enabled = false
    })
    .await;
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", "bauantrag"),
            ("redirect_uri", "http://127.0.0.1:9300/cb"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let q = Browser::new()
        .login(&s, &url, "eva.koch", "Gorleben-Test-2026!")
        .await;
    let res = s
        .post_form(
            "/token",
            Some(("bauantrag", &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", "http://127.0.0.1:9300/cb"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let t: serde_json::Value = res.json().await.unwrap();
    let claims = jwt_payload(t["id_token"].as_str().unwrap());
    assert_eq!(claims["roles"], serde_json::json!(["sachbearbeitung"]));
    assert_eq!(claims["tenant"], "gorleben");
    let res = s
        .post_form(
            "/token",
            Some(("machine", "machine-secret-from-stdin-0123456789abcdef")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(res.status(), 200);

    // keys rotate: published by the running node after its reload interval.
    let (code, out, err) = cli.run(&["keys", "rotate"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new keys published"));
    s.clock.advance(31);
    let jwks: serde_json::Value = TestServer::http()
        .get(s.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        6,
        "old and new key of each algorithm"
    );
    let (code, out, _) = cli.run(&["keys", "list"], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 6);

    // audit verify: fine, then names the first tampered event.
    let (code, out, err) = cli.run(&["audit", "verify"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("audit chain ok"));
    let (code, out, err) = cli.run(&["audit", "checkpoint", "export"], None);
    assert_eq!(code, 0, "{err}");
    for line in out.lines() {
        let cp: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(cp["signature"].is_string() && cp["public_key"].is_string());
    }
    // Retention: nothing is pruned before it ends (audit.retention_days)
    let (code, _, err) = cli.run(&["audit", "prune", "--older-than", "0"], None);
    assert_ne!(code, 0);
    assert!(err.contains("retention_days"), "{err}");
    // With a retention of 0 days: personal data erased, the chain still
    // verifies, and says what its newest signed checkpoint anchors.
    let none = [("INTERKOM_AUDIT__RETENTION_DAYS", "0")];
    let (code, out, err) = cli.run_with(&["audit", "prune", "--older-than", "0"], None, &none);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("erased"), "{out}");
    let (code, out, err) = cli.run_with(&["audit", "verify"], None, &none);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("newest signed checkpoint") || out.contains("no signed checkpoint"),
        "{out}"
    );
    // With the year's retention, the events pruned today are refused.
    let (code, _, err) = cli.run(&["audit", "verify"], None);
    assert_eq!(code, 2);
    assert!(err.contains("retention"), "{err}");
    sqlx::query("UPDATE audit_events SET actor_tenant = 'someone-else' WHERE seq = 2")
        .execute(&s.app.pool)
        .await
        .unwrap();
    let (code, _, err) = cli.run_with(&["audit", "verify"], None, &none);
    assert_eq!(code, 2);
    assert!(err.contains("seq 2"), "{err}");
}

#[tokio::test]
async fn config_check_reports_every_problem_at_once() {
    let dir = std::env::temp_dir().join(format!("interkom-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"nowhere\"\nissuer = \"not a url\"\ndatabase_url = \"mysql://x\"\n\
         [password]\nmemory_kib = 1024\niterations = 1\nparallelism = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interkom"))
        .args(["--config", bad.to_str().unwrap(), "config", "check"])
        .env_remove("INTERKOM_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for problem in ["listen", "issuer", "database_url", "key_encryption_key"] {
        assert!(err.contains(problem), "{problem} reported in: {err}");
    }
    // Unknown keys are rejected.
    std::fs::write(&bad, "listen = \"127.0.0.1:1\"\nissuer = \"http://x\"\ndatabase_url = \"sqlite://x\"\ntypo = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interkom"))
        .args(["--config", bad.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("typo"));
}

#[tokio::test]
async fn bootstrap_creates_the_first_administrator_once() {
    let cli = Cli {
        database_url: fresh_database().await,
        kek: interkom_directory::MasterKey::generate().to_base64(),
    };
    let (code, _, err) = cli.run(&["migrate"], None);
    assert_eq!(code, 0, "{err}");
    // Only a Kreis, only a known tenant.
    let (code, _, err) = cli.run(&["admin", "bootstrap", "--tenant", "gorleben"], None);
    assert_ne!(code, 0);
    assert!(err.contains("not a Kreis"), "{err}");
    let (code, out, err) = cli.run(
        &[
            "admin",
            "bootstrap",
            "--tenant",
            "lk-luechow-dannenberg",
            "--username",
            "erste.admin",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("initial password (shown only now): "))
        .unwrap()
        .to_owned();
    assert!(password.len() >= 20);
    // A second bootstrap is refused: the admin API creates the others.
    let (code, _, err) = cli.run(
        &[
            "admin",
            "bootstrap",
            "--tenant",
            "lk-luechow-dannenberg",
            "--username",
            "zweite.admin",
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("exists already"), "{err}");
    let (_, out, _) = cli.run(&["audit", "verify"], None);
    assert!(
        out.contains("ok") || out.contains("OK") || out.contains("verified"),
        "{out}"
    );
}
