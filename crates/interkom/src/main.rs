//! `interkom`: identity and access broker for German local government.
//!
//! The command line: its arguments (clap), then one function per command.
//! `serve`, `migrate` and the commands on tenants, accounts, clients, keys
//! and the audit trail open a node ([`App`]); `config check`, `dev-cert` and
//! `policy …` do not (`policy …` reads the live policy without changing
//! it). Storage is the library crates'; no SQL here.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use interkom::{App, Config, FileConfig};
use interkom_directory::{AuthMethod, ClientSpec, Directory, GrantType};
use interkom_gateway::{Alg, Clock};
use interkom_policy::store::{self, LiveData};
use interkom_policy::{
    AuthContext, Change, Effect, Finding, PolicyEngine, PolicySet, ResourceRef, RuleLine, Severity,
    Snapshot, SubjectRef, TenantTree,
};
use sqlx::AnyPool;

// mimalloc: less CPU per request than glibc's allocator under many small
// allocations, and argon2id's 19 MiB blocks go back to the system instead of
// lingering in per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc returns freed memory to the system lazily: at a collection
/// after a short delay (10 ms), at most one per delay, and a quiet node
/// makes none, so what a burst freed (argon2id's 19 MiB per password
/// thread, connection buffers) would stay resident. A thread that ends is
/// such a collection: one short-lived thread a second keeps a node at rest
/// lean, at the cost of a thread start.
fn start_allocator_collector() {
    let collect = || loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let ends = std::thread::Builder::new()
            .name("mi-collect".into())
            .spawn(|| drop(std::hint::black_box(Box::new(0u64))));
        if let Ok(t) = ends {
            let _ = t.join();
        }
    };
    let _ = std::thread::Builder::new()
        .name("mi-collect".into())
        .spawn(collect);
}

#[derive(Parser)]
#[command(
    name = "interkom",
    version,
    about = "Identity and access broker for the Kreis, Samtgemeinden and Gemeinden"
)]
struct Cli {
    /// Configuration file (TOML); every key can be overridden by INTERKOM_<KEY>.
    #[arg(
        long,
        global = true,
        env = "INTERKOM_CONFIG",
        default_value = "config/interkom.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    Serve,
    /// Write a self-signed certificate and key for local TLS (localhost,
    /// 127.0.0.1, ::1 and any --name); then set tls.cert_file and
    /// tls.key_file to them.
    DevCert {
        #[arg(long, default_value = "data/tls/cert.pem")]
        cert: PathBuf,
        #[arg(long, default_value = "data/tls/key.pem")]
        key: PathBuf,
        /// Further DNS names or addresses.
        #[arg(long)]
        name: Vec<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Check the configuration and report every problem.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The administrative tree.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Local accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Registered Fachverfahren (OAuth clients).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The access policy (the policy directory and the live policy).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The Kommunen's directories (Active Directory, LDAP).
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Protected applications (forward authentication behind nginx,
    /// Traefik or Caddy).
    Application {
        #[command(subcommand)]
        command: ApplicationCommand,
    },
    /// SAML service providers (Fachverfahren that speak only SAML).
    Sp {
        #[command(subcommand)]
        command: SpCommand,
    },
    /// SAML identity sources of citizens and businesses (BundID, Mein
    /// Unternehmenskonto).
    SamlSource {
        #[command(subcommand)]
        command: SamlSourceCommand,
    },
}

#[derive(Subcommand)]
enum SamlSourceCommand {
    /// Print every SAML identity source as JSON.
    List,
    /// Register or replace a source from a JSON file (the keys of
    /// `[[saml_sources]]`) with the IdP's metadata (`--metadata FILE`, or
    /// the file's `metadata_url`, fetched).
    Put {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_name = "FILE")]
        metadata: Option<PathBuf>,
    },
    /// Remove a source: its Responses are refused from now on.
    Delete {
        #[arg(long, value_name = "ID")]
        id: String,
    },
}

#[derive(Subcommand)]
enum SpCommand {
    /// Print every SAML service provider as JSON.
    List,
    /// Register or replace an SP from a JSON file in the admin API's
    /// format, or from its metadata (`--metadata FILE --id --tenant --name`).
    Put {
        #[arg(long, value_name = "FILE", conflicts_with = "metadata")]
        file: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        metadata: Option<PathBuf>,
        #[arg(long, requires = "metadata")]
        id: Option<String>,
        #[arg(long, requires = "metadata")]
        tenant: Option<String>,
        #[arg(long, requires = "metadata")]
        name: Option<String>,
        /// The policy resource its logins are decided on.
        #[arg(long, requires = "metadata")]
        resource: Option<String>,
    },
    /// Remove an SP: its requests are refused from now on.
    Delete {
        #[arg(long, value_name = "ID")]
        id: String,
    },
}

#[derive(Subcommand)]
enum ApplicationCommand {
    /// Print every protected application as JSON.
    List,
    /// Register or replace an application from a JSON file (`-` for
    /// stdin) in the admin API's format (`PUT /admin/v1/applications/{id}`).
    Put {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove an application: its proxies' checks are refused from now on.
    Delete {
        #[arg(long, value_name = "ID")]
        id: String,
    },
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Import the people and groups of a directory now: accounts made or
    /// linked, roles in step, people removed or disabled there locked
    /// (their sessions end). Prints what changed as JSON.
    Sync {
        #[arg(long, value_name = "ID")]
        source: String,
        /// Lock however many accounts the directory no longer lists (a
        /// sync refuses to lock more than a tenth of them otherwise).
        #[arg(long)]
        force: bool,
    },
    /// Bind as the service account, find USERNAME and show their groups
    /// and the roles they map to (nothing is changed).
    Test {
        #[arg(long, value_name = "ID")]
        source: String,
        #[arg(long)]
        username: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create the first administrator of a Kreis on a fresh installation,
    /// with a random initial password printed once. Refused once any
    /// administrator exists (then the admin API creates the others).
    Bootstrap {
        /// The Kreis tenant the administrator administers.
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "admin")]
        username: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check the policy directory together with the live policy: syntax,
    /// unknown tenants, roles and resources, expired grants, lines that can
    /// never match, contradictions. Exits non-zero if anything is found.
    Check,
    /// Decide one question and print the decision with its reasons.
    Explain(Explain),
    /// List the decisions a proposed change would flip.
    WhatIf(WhatIf),
}

#[derive(Args)]
struct Explain {
    /// Username or subject id.
    #[arg(long)]
    subject: String,
    #[arg(long)]
    action: String,
    /// Resource id (or, with --resource-type, any id of that type).
    #[arg(long)]
    resource: String,
    #[arg(long)]
    resource_type: Option<String>,
    /// The level of assurance of the login (acr).
    #[arg(long, default_value = "urn:interkom:loa:low")]
    acr: String,
    /// Seconds since the login.
    #[arg(long, default_value_t = 0)]
    auth_age: i64,
    /// Authentication methods (amr), e.g. pwd,otp.
    #[arg(long, value_delimiter = ',', default_value = "pwd")]
    amr: Vec<String>,
}

#[derive(Args)]
struct WhatIf {
    /// A line to add, in casbin CSV form (repeatable).
    #[arg(long)]
    add: Vec<String>,
    /// A line to remove (repeatable).
    #[arg(long)]
    remove: Vec<String>,
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// Print every signed checkpoint as a JSON line, with the public key, for
    /// keeping outside the database.
    Export,
}

#[derive(Subcommand)]
enum ConfigCommand {
    Check,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// List all tenants in tree order.
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local account; the password is read from standard input.
    Add(UserAdd),
}

#[derive(Args)]
struct UserAdd {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    username: String,
    /// Read the password from standard input (first line).
    #[arg(long, required = true)]
    password_stdin: bool,
    /// Role in the home tenant (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    email: Option<String>,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client. Confidential clients get a generated secret
    /// (printed once) unless --secret-stdin gives one.
    Add(ClientAdd),
}

#[derive(Args)]
struct ClientAdd {
    #[arg(long)]
    id: String,
    #[arg(long)]
    tenant: String,
    /// Display name on the login page (defaults to the id).
    #[arg(long)]
    name: Option<String>,
    /// Redirect URI, matched exactly (repeatable).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// A public client (no secret; PKCE required).
    #[arg(long, conflicts_with_all = ["secret_stdin", "jwks_file"])]
    public: bool,
    /// Read the client secret from standard input instead of generating one.
    #[arg(long)]
    secret_stdin: bool,
    /// Authenticate with private_key_jwt; the client's public keys (JWKS).
    #[arg(long, conflicts_with = "secret_stdin")]
    jwks_file: Option<PathBuf>,
    /// authorization_code, refresh_token or client_credentials (repeatable;
    /// default: authorization_code and refresh_token).
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// Scope the client may request (repeatable; default: openid profile email roles).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// ID token signing algorithm: RS256 (default), ES256 or EdDSA.
    #[arg(long, default_value = "RS256")]
    id_token_alg: String,
    /// Where logout tokens go when a user's session ends (Back-Channel Logout).
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// One of the county's own Fachverfahren: logs people in without
    /// asking their consent.
    #[arg(long)]
    first_party: bool,
    /// May introspect the tokens of people of its tenant's subtree.
    #[arg(long)]
    resource_server: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Publish new signing keys; they sign after the publication lead, and
    /// the old keys stay published until their tokens have expired.
    Rotate,
    /// List the stored keys.
    List,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; exits non-zero naming the first bad event.
    Verify {
        #[arg(long)]
        from: Option<i64>,
        #[arg(long)]
        to: Option<i64>,
    },
    /// Signed checkpoints of the chain.
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// Erase the personal data (subject, target, reason, source, details) of
    /// events older than DAYS; the chain stays verifiable.
    Prune {
        /// Days to keep (default and least: `audit.retention_days`).
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u32>,
    },
}

/// Ctrl-C or SIGTERM (what systemd and Kubernetes send) end the server
/// gracefully: open requests finish, no new ones are accepted.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    let line = s.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        bail!("nothing on standard input");
    }
    Ok(line)
}

fn main() -> ExitCode {
    start_allocator_collector();
    // Threads of blocking work (key generation, policy compilation at
    // start-up) end soon after it, with their memory: at rest a node keeps
    // only its workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Needs no configuration: it makes what the configuration will name.
    if let Command::DevCert { cert, key, name } = &cli.command {
        return dev_cert(cert, key, name);
    }
    let config = FileConfig::load(&cli.config)?.validate()?;
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => return Ok(config_check(&config)),
        Command::Policy { command } => return policy_command(config, command).await,
        _ => {}
    }
    init_logging(&config.log, matches!(cli.command, Command::Serve));
    let started = std::time::Instant::now();
    let app = App::open(config, Clock::default()).await?;
    node_command(&app, cli.command, started).await
}

/// Logs go to standard error: the server's at the configured level, a
/// command's only when something is wrong.
fn init_logging(log: &str, serving: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(if serving { filter } else { "warn".into() })
        .with_writer(std::io::stderr)
        .init();
}

/// `interkom dev-cert`.
fn dev_cert(cert: &Path, key: &Path, names: &[String]) -> anyhow::Result<ExitCode> {
    interkom::tls::dev_cert(cert, key, names)?;
    println!(
        "certificate {} and key {} written",
        cert.display(),
        key.display()
    );
    println!(
        "set tls.cert_file and tls.key_file (INTERKOM_TLS__CERT_FILE, INTERKOM_TLS__KEY_FILE)"
    );
    Ok(ExitCode::SUCCESS)
}

/// `interkom config check`: the configuration validated (by now).
fn config_check(config: &Config) -> ExitCode {
    println!(
        "configuration ok: {} tenants, issuer {}",
        config.tenants.len(),
        config.gateway.issuer_str()
    );
    ExitCode::SUCCESS
}

/// The commands that work on an opened node (migrated, keys loaded).
async fn node_command(
    app: &App,
    command: Command,
    started: std::time::Instant,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => serve(app, started).await?,
        Command::Migrate => println!("migrations applied"),
        Command::DevCert { .. } | Command::Config { .. } | Command::Policy { .. } => {}
        Command::Tenant {
            command: TenantCommand::List,
        } => tenant_list(app),
        Command::User {
            command: UserCommand::Add(a),
        } => user_add(app, a).await?,
        Command::Admin {
            command: AdminCommand::Bootstrap { tenant, username },
        } => admin_bootstrap(app, tenant, username).await?,
        Command::Client {
            command: ClientCommand::Add(a),
        } => client_add(app, a).await?,
        Command::Keys { command } => keys_command(app, command).await?,
        Command::Audit { command } => return audit_command(app, command).await,
        Command::Directory { command } => return directory_command(app, command).await,
        Command::Application { command } => return application_command(app, command).await,
        Command::Sp { command } => return sp_command(app, command).await,
        Command::SamlSource { command } => return saml_source_command(app, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `interkom serve`: until Ctrl-C or SIGTERM.
async fn serve(app: &App, started: std::time::Instant) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(app.config.listen)
        .await
        .with_context(|| format!("binding {}", app.config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        issuer = app.config.gateway.issuer_str(),
        ready_ms = started.elapsed().as_millis() as u64,
        "interkom ready"
    );
    interkom::serve(app, listener, shutdown_signal()).await
}

/// `interkom tenant list`: the tree, indented by depth.
fn tenant_list(app: &App) {
    for t in app.tenants.iter() {
        let indent = "  ".repeat(t.path.len() - 1);
        println!("{indent}{}\t{}\t{}", t.id, t.level.as_str(), t.name);
    }
}

/// `interkom user add`.
async fn user_add(app: &App, a: UserAdd) -> anyhow::Result<()> {
    let password = read_stdin_line()?;
    let id = app
        .directory
        .add_user(interkom_directory::NewUser {
            tenant: a.tenant.into(),
            username: a.username.clone(),
            password: password.into(),
            name: a.name,
            email: a.email,
            roles: a.roles,
        })
        .await?;
    println!("user {} created, subject {id}", a.username);
    Ok(())
}

/// `interkom admin bootstrap`: the first administrator of a Kreis, only
/// while there is none.
async fn admin_bootstrap(app: &App, tenant: String, username: String) -> anyhow::Result<()> {
    if interkom_policy::roles::count_assignments(&app.pool, "admin").await? > 0 {
        bail!("an administrator exists already: create further ones through the admin API");
    }
    match app.tenants.get(&tenant) {
        Some(t) if t.parent.is_none() => {}
        Some(_) => {
            bail!("`{tenant}` is not a Kreis: the first administrator administers a whole Kreis")
        }
        None => bail!("unknown tenant `{tenant}`"),
    }
    let password = interkom_directory::crypto::random_token(15);
    let id = app
        .directory
        .add_user(interkom_directory::NewUser {
            tenant: tenant.clone().into(),
            username: username.clone(),
            password: password.clone().into(),
            name: None,
            email: None,
            roles: vec!["admin".into()],
        })
        .await?;
    app.audit
        .append(
            interkom_audit::AuditEvent::new(
                interkom_audit::Action::AdminChange,
                interkom_audit::Outcome::Success,
            )
            .target(format!("users/{id}"))
            .details(serde_json::json!({
                "op": "admin.bootstrap",
                "after": { "username": username, "tenant": tenant, "roles": ["admin"] },
            })),
        )
        .await?;
    // Administration takes a second factor: the first administrator's
    // TOTP comes with the account.
    let secret = app
        .gateway
        .enrol_totp(&id, None)
        .await?
        .context("enrolling the administrator's TOTP")?;
    println!("administrator {username} created in {tenant} (subject {id})");
    println!("initial password (shown only now): {password}");
    println!("TOTP secret (base32, shown only now; SHA1, 6 digits, 30 s): {secret}");
    Ok(())
}

/// How a client added on the command line authenticates: no secret
/// (public), its keys (private_key_jwt), or a secret given or generated.
fn client_auth(
    a: &ClientAdd,
) -> anyhow::Result<(AuthMethod, Option<String>, Option<serde_json::Value>)> {
    if a.public {
        return Ok((AuthMethod::None, None, None));
    }
    if let Some(f) = &a.jwks_file {
        let jwks = serde_json::from_str(&std::fs::read_to_string(f)?).context("JWKS file")?;
        return Ok((AuthMethod::PrivateKeyJwt, None, Some(jwks)));
    }
    let secret = if a.secret_stdin {
        Some(read_stdin_line()?)
    } else {
        None
    };
    Ok((AuthMethod::ClientSecretBasic, secret, None))
}

/// `interkom client add`.
async fn client_add(app: &App, a: ClientAdd) -> anyhow::Result<()> {
    let grant_types = if a.grants.is_empty() {
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    } else {
        a.grants
            .iter()
            .map(|g| GrantType::parse(g).with_context(|| format!("unknown grant `{g}`")))
            .collect::<anyhow::Result<_>>()?
    };
    let (auth_method, secret, jwks) = client_auth(&a)?;
    let generated = app
        .directory
        .register_client(ClientSpec {
            name: a.name.unwrap_or_else(|| a.id.clone()),
            id: a.id.clone().into(),
            tenant: a.tenant.into(),
            redirect_uris: a.redirect_uris,
            post_logout_redirect_uris: a.post_logout_redirect_uris,
            grant_types,
            scopes: if a.scopes.is_empty() {
                interkom::config::default_scopes()
            } else {
                a.scopes
            },
            auth_method,
            secret: secret.map(Into::into),
            jwks,
            id_token_alg: Alg::parse(&a.id_token_alg)
                .context("--id-token-alg: RS256, ES256 or EdDSA")?,
            backchannel_logout_uri: a.backchannel_logout_uri.clone(),
            first_party: a.first_party,
            resource_server: a.resource_server,
        })
        .await?;
    println!("client {} registered", a.id);
    if let Some(s) = generated {
        println!("client_secret: {s}");
        println!("(shown once; interkom stores only a keyed hash)");
    }
    Ok(())
}

/// `interkom keys rotate|list`.
async fn keys_command(app: &App, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate => {
            let kids = app.gateway.rotate_keys().await?;
            println!("new keys published: {}", kids.join(", "));
            println!(
                "they sign from {} s on",
                app.config.gateway.key_publish_lead
            );
        }
        KeysCommand::List => {
            for k in app.gateway.list_keys().await? {
                println!(
                    "{}\t{}\tsigns from {}\tretires {}",
                    k.kid,
                    k.alg,
                    k.sign_from,
                    k.retire_at
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
    }
    Ok(())
}

/// `interkom audit verify|checkpoint export|prune`.
async fn audit_command(app: &App, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Prune { older_than } => {
            let retention = app.config.audit.retention_days;
            let days = older_than.unwrap_or(retention);
            if days < retention {
                anyhow::bail!(
                    "--older-than {days}: events are kept {retention} days (audit.retention_days)"
                );
            }
            let n = app.audit.prune_older_than(days).await?;
            println!("personal data of {n} events older than {days} days erased");
        }
        AuditCommand::Checkpoint {
            command: CheckpointCommand::Export,
        } => checkpoint_export(app).await?,
        AuditCommand::Verify { from, to } => return audit_verify(app, from, to).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `interkom audit checkpoint export`: one JSON line per checkpoint.
async fn checkpoint_export(app: &App) -> anyhow::Result<()> {
    let key = app
        .config
        .audit
        .checkpoint_key
        .as_ref()
        .map(|k| k.public_key_base64());
    for cp in interkom_audit::checkpoint::list(&app.pool, 0, i64::MAX).await? {
        let mut line = serde_json::to_value(&cp)?;
        line["public_key"] = serde_json::json!(key);
        println!("{line}");
    }
    Ok(())
}

/// `interkom audit verify`: exit code 2 names the first bad event.
async fn audit_verify(app: &App, from: Option<i64>, to: Option<i64>) -> anyhow::Result<ExitCode> {
    let keys: Vec<Vec<u8>> = app
        .config
        .audit
        .checkpoint_key
        .iter()
        .map(|k| k.public_key().to_vec())
        .collect();
    let retention = Some(app.config.audit.retention_days);
    let report = interkom_audit::verify_with_keys(&app.pool, from, to, &keys, retention).await?;
    match report.first_bad {
        None => {
            println!(
                "audit chain ok: {} events and {} signed checkpoints verified",
                report.checked, report.checkpoints
            );
            // What the chain alone vouches for: cut off, it would not show.
            match report.newest_checkpoint {
                Some(cp) => println!(
                    "newest signed checkpoint: seq {cp}; {} events after it",
                    report.unanchored
                ),
                None => println!(
                    "no signed checkpoint: the chain alone vouches for all {} events",
                    report.unanchored
                ),
            }
        }
        Some((seq, why)) => {
            eprintln!("audit chain broken at seq {seq}: {why}");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `interkom policy …`: works on the policy directory as it would be
/// imported, without importing it (a check must not change the live policy).
async fn policy_command(config: Config, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    let pool = interkom::db::connect(config.database_url.as_str()).await?;
    interkom::db::migrate(&pool).await?;
    let tree = TenantTree::from_specs(&config.tenants)?;
    let now = Clock::default().now();
    let set = config.policy.clone();
    let live = store::load_with_baseline(&pool, &set, now).await?;
    let (snap, problems) = Snapshot::compile(&tree, &set, &live, now);
    match command {
        PolicyCommand::Check => policy_check(&config, pool, tree, &live, &snap, &problems).await,
        PolicyCommand::Explain(e) => policy_explain(&set, &snap, &e, now).await,
        PolicyCommand::WhatIf(w) => policy_what_if(&tree, &set, &live, &w, now),
    }
}

/// `interkom policy check`: every problem, and every resource whose client
/// is not registered; exit code 1 if there is any.
async fn policy_check(
    config: &Config,
    pool: AnyPool,
    tree: TenantTree,
    live: &LiveData,
    snap: &Snapshot,
    problems: &[Finding],
) -> anyhow::Result<ExitCode> {
    let mut exit = ExitCode::SUCCESS;
    for p in problems {
        let sev = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        println!("{sev}: {}: {}", p.subject, p.message);
        exit = ExitCode::from(1);
    }
    if live.resources.iter().any(|r| r.client.is_some()) {
        let directory = read_only_directory(config, pool, tree).await?;
        for r in &live.resources {
            if let Some(c) = &r.client {
                if directory.client(c).await?.is_none()
                    && !config.demo.clients.iter().any(|d| &d.id == c)
                {
                    println!("warning: resource {}: client `{c}` is not registered", r.id);
                    exit = ExitCode::from(1);
                }
            }
        }
    }
    if exit == ExitCode::SUCCESS {
        println!(
            "policy ok: {} (baseline {})",
            snap.counts(),
            config.policy.version
        );
    }
    Ok(exit)
}

/// The directory, to look clients up, over a policy engine that leaves the
/// live policy as it is.
async fn read_only_directory(
    config: &Config,
    pool: AnyPool,
    tree: TenantTree,
) -> anyhow::Result<Directory> {
    let clock = Clock::default();
    let policy = PolicyEngine::open(pool.clone(), config.policy.clone(), clock.clone()).await?;
    Ok(Directory::new(
        config.directory(),
        pool,
        config.master_key.clone(),
        Arc::new(tree),
        policy,
        clock,
    )?)
}

/// `interkom policy explain`: one decision with its reasons, and what
/// casbin's own enforcer says of the same lines; exit code 2 unless allowed.
async fn policy_explain(
    set: &PolicySet,
    snap: &Snapshot,
    e: &Explain,
    now: i64,
) -> anyhow::Result<ExitCode> {
    let amr: Vec<&str> = e.amr.iter().map(String::as_str).collect();
    let ctx = AuthContext::from_claims(Some(&e.acr), &amr, Some(now - e.auth_age), now);
    let resource = ResourceRef {
        id: &e.resource,
        kind: e.resource_type.as_deref(),
        properties: None,
    };
    let d = snap.decide(SubjectRef::User(&e.subject), &e.action, resource, &ctx);
    let effect = match d.effect {
        Effect::Allow => "allow".to_owned(),
        Effect::Deny => "deny".to_owned(),
        Effect::StepUp {
            required_acr,
            max_age,
        } => format!(
            "step_up (acr {}, max age {})",
            required_acr.map(|a| a.acr()).unwrap_or("any"),
            max_age
                .map(|m| format!("{m} s"))
                .unwrap_or_else(|| "any".into())
        ),
    };
    println!("decision: {effect}");
    if let Some(n) = d.need {
        println!("protection need: {}", n.as_str());
    }
    for r in &d.reasons {
        let v = snap.describe(r);
        println!("  - {}", v["message"].as_str().unwrap_or(""));
    }
    // The same lines through casbin's own enforcer.
    let oracle = interkom_policy::oracle::CasbinOracle::new(&set.model_text, snap).await?;
    let requests = snap.casbin_requests(&e.subject, &e.action, resource);
    println!(
        "casbin enforcer on the policy lines: {}",
        if oracle.lines_allow(&requests)? {
            "allow"
        } else {
            "no allow"
        }
    );
    Ok(if d.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `interkom policy what-if`: the decisions adding and removing lines would
/// flip.
fn policy_what_if(
    tree: &TenantTree,
    set: &PolicySet,
    live: &LiveData,
    w: &WhatIf,
    now: i64,
) -> anyhow::Result<ExitCode> {
    let parse = |l: &String| RuleLine::parse(l).map_err(|e| anyhow::anyhow!("`{l}`: {e}"));
    let change = Change {
        add: w.add.iter().map(parse).collect::<anyhow::Result<_>>()?,
        remove: w.remove.iter().map(parse).collect::<anyhow::Result<_>>()?,
        ..Default::default()
    };
    let preview = interkom_policy::live::what_if(tree, set, live, &change, now);
    for e in &preview.errors {
        println!("error\t{}\t{}", e.subject, e.message);
    }
    let flips = preview.flips;
    if flips.is_empty() {
        println!("no decision changes");
    }
    for f in flips {
        println!(
            "{}\t{}\t{}\t{} -> {}",
            f.subject,
            f.action,
            f.resource,
            if f.before { "allow" } else { "deny" },
            if f.after { "allow" } else { "deny" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `interkom directory …`.
/// `interkom sp list|put|delete`: the operator's changes, audited as
/// `admin_change` by `cli`.
async fn sp_command(app: &App, command: SpCommand) -> anyhow::Result<ExitCode> {
    use interkom_audit::{Action, AuditEvent, Outcome};
    use interkom_directory::service_providers::ServiceProviderConfig;
    let audit = |op: &str, id: &str, after: serde_json::Value| {
        AuditEvent::new(Action::AdminChange, Outcome::Success)
            .subject("cli", None)
            .target(format!("service-providers/{id}"))
            .details(serde_json::json!({ "op": op, "after": after, "via": "cli" }))
    };
    match command {
        SpCommand::List => {
            let all: Vec<_> = app
                .directory
                .service_providers()
                .await?
                .into_iter()
                .map(|s| s.cfg)
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        SpCommand::Put {
            file,
            metadata,
            id,
            tenant,
            name,
            resource,
        } => {
            let cfg: ServiceProviderConfig = match (file, metadata) {
                (Some(f), _) => serde_json::from_str(
                    &std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                )
                .context("the service provider's JSON")?,
                (None, Some(m)) => {
                    let xml = std::fs::read_to_string(&m)
                        .with_context(|| format!("reading {}", m.display()))?;
                    let (Some(id), Some(tenant)) = (id, tenant) else {
                        bail!("--metadata needs --id and --tenant");
                    };
                    let name = name.unwrap_or_else(|| id.clone());
                    let mut cfg = ServiceProviderConfig::from_metadata(&id, &tenant, &name, &xml)
                        .map_err(|e| anyhow::anyhow!("the metadata: {e}"))?;
                    cfg.resource = resource;
                    cfg
                }
                (None, None) => bail!("--file or --metadata"),
            };
            let id = cfg.id.clone();
            let after = serde_json::to_value(&cfg)?;
            match app.directory.put_service_provider(cfg).await {
                Ok(created) => {
                    app.audit.append(audit("sp.put", &id, after)).await?;
                    println!(
                        "service provider {id} {}",
                        if created { "registered" } else { "replaced" }
                    );
                }
                Err(e) => {
                    eprintln!("service provider {id} refused: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        SpCommand::Delete { id } => {
            if !app.directory.delete_service_provider(&id).await? {
                eprintln!("no service provider `{id}`");
                return Ok(ExitCode::from(1));
            }
            app.audit
                .append(audit("sp.delete", &id, serde_json::Value::Null))
                .await?;
            println!("service provider {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `interkom saml-source list|put|delete`: the operator's changes, audited
/// as `admin_change` by `cli`.
async fn saml_source_command(app: &App, command: SamlSourceCommand) -> anyhow::Result<ExitCode> {
    use interkom_audit::{Action, AuditEvent, Outcome};
    use interkom_directory::saml_sources::SamlSourceConfig;
    let audit = |op: &str, id: &str, after: serde_json::Value| {
        AuditEvent::new(Action::AdminChange, Outcome::Success)
            .subject("cli", None)
            .target(format!("saml-sources/{id}"))
            .details(serde_json::json!({ "op": op, "after": after, "via": "cli" }))
    };
    match command {
        SamlSourceCommand::List => {
            let all: Vec<_> = app
                .directory
                .saml_sources()
                .await?
                .iter()
                .map(|s| s.cfg.clone())
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        SamlSourceCommand::Put { file, metadata } => {
            let cfg: SamlSourceConfig = serde_json::from_str(
                &std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?,
            )
            .context("the source's JSON")?;
            let xml = match (
                metadata.or_else(|| cfg.metadata_file.clone()),
                &cfg.metadata_url,
            ) {
                (Some(m), _) => std::fs::read_to_string(&m)
                    .with_context(|| format!("reading {}", m.display()))?,
                (None, Some(url)) => app
                    .gateway
                    .fetch_saml_metadata(url)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?,
                (None, None) => bail!("--metadata, or metadata_url in the file"),
            };
            let id = cfg.id.clone();
            let after = serde_json::to_value(&cfg)?;
            if let Err(e) = app.directory.put_saml_source(cfg, &xml).await {
                eprintln!("SAML source {id} refused: {e}");
                return Ok(ExitCode::from(1));
            }
            app.audit
                .append(audit("saml_source.put", &id, after))
                .await?;
            println!("SAML source {id} registered");
        }
        SamlSourceCommand::Delete { id } => {
            if !app.directory.delete_saml_source(&id).await? {
                eprintln!("no SAML source `{id}`");
                return Ok(ExitCode::from(1));
            }
            app.audit
                .append(audit("saml_source.delete", &id, serde_json::Value::Null))
                .await?;
            println!("SAML source {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `interkom application list|put|delete`: the operator's changes, audited
/// as `admin_change` by `cli`.
async fn application_command(app: &App, command: ApplicationCommand) -> anyhow::Result<ExitCode> {
    use interkom_audit::{Action, AuditEvent, Outcome};
    use interkom_directory::applications::ApplicationConfig;
    let audit = |op: &str, id: &str, after: serde_json::Value| {
        AuditEvent::new(Action::AdminChange, Outcome::Success)
            .subject("cli", None)
            .target(format!("applications/{id}"))
            .details(serde_json::json!({ "op": op, "after": after, "via": "cli" }))
    };
    match command {
        ApplicationCommand::List => {
            let idx = app.directory.applications_now().await?;
            let mut all: Vec<&ApplicationConfig> = idx.all().map(|a| &a.cfg).collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        ApplicationCommand::Put { file } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let cfg: ApplicationConfig =
                serde_json::from_str(&text).context("the application's JSON")?;
            let id = cfg.id.clone();
            let after = serde_json::to_value(&cfg)?;
            match app.directory.put_application(cfg).await {
                Ok(created) => {
                    app.audit
                        .append(audit("application.put", &id, after))
                        .await?;
                    println!(
                        "application {id} {}",
                        if created { "registered" } else { "replaced" }
                    );
                }
                Err(e) => {
                    eprintln!("application {id} refused: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        ApplicationCommand::Delete { id } => {
            if !app.directory.delete_application(&id).await? {
                eprintln!("no application `{id}`");
                return Ok(ExitCode::from(1));
            }
            app.audit
                .append(audit("application.delete", &id, serde_json::Value::Null))
                .await?;
            println!("application {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn directory_command(app: &App, command: DirectoryCommand) -> anyhow::Result<ExitCode> {
    match command {
        DirectoryCommand::Sync { source, force } => {
            match app.gateway.sync_directory(&source, force).await {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("directory sync failed: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        DirectoryCommand::Test { source, username } => {
            let report = interkom_admin::directories::test_connection(
                &app.directory,
                &source,
                username.as_deref(),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
