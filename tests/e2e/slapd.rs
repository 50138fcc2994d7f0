//! A real OpenLDAP `slapd` per test, on loopback ports, with TLS from a CA
//! made for it, seeded with the directory of `tests/ldap/README.md`
//! (started by `tests/ldap/slapd-run`; `scripts/test` installs slapd).
//! Dropping it stops the server.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interkom_directory::ldap::{DirectoryKind, DirectorySourceConfig};

use crate::common::repo_root;

pub const SUFFIX: &str = "dc=hitzacker,dc=example";
pub const SERVICE_DN: &str = "cn=interkom,ou=dienste,dc=hitzacker,dc=example";
pub const SERVICE_PASSWORD: &str = "dienst-geheim-2026";
pub const ROOT_DN: &str = "cn=admin,dc=hitzacker,dc=example";
pub const ROOT_PASSWORD: &str = "admin-geheim";
pub const PASSWORD: &str = "Sommer-2026!";

pub struct Slapd {
    child: Option<Child>,
    pub dir: PathBuf,
    pub ldaps_port: u16,
    pub ldap_port: u16,
}

/// A port free on loopback a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Slapd {
    pub fn start() -> Slapd {
        assert!(
            std::path::Path::new("/usr/sbin/slapd").exists(),
            "slapd is not installed: scripts/test installs Debian's slapd and ldap-utils"
        );
        for _ in 0..3 {
            let dir = std::env::temp_dir()
                .join("interkom-tests")
                .join(format!("slapd-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            let (ldaps_port, ldap_port) = (free_port(), free_port());
            let mut child = Command::new(repo_root().join("tests/ldap/slapd-run"))
                .arg(&dir)
                .arg(ldaps_port.to_string())
                .arg(ldap_port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if line.trim() == "ready" {
                        let _ = tx.send(());
                    }
                }
            });
            if rx.recv_timeout(Duration::from_secs(30)).is_ok() {
                return Slapd {
                    child: Some(child),
                    dir,
                    ldaps_port,
                    ldap_port,
                };
            }
            // A port taken meanwhile (exit 3): again with others.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("slapd did not start (see its output above)");
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.pem")).unwrap()
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// A registration of this directory for `tenant` (OpenLDAP kind, the
    /// group nesting followed by group search).
    pub fn source(&self, id: &str, tenant: &str) -> DirectorySourceConfig {
        let mut roles = std::collections::BTreeMap::new();
        // `rathaus` holds `buergerservice`, which holds `meldeamt`.
        roles.insert(
            format!("cn=rathaus,ou=groups,{SUFFIX}"),
            "sachbearbeitung".to_owned(),
        );
        roles.insert(
            format!("CN=Bauamt, OU=groups, {SUFFIX}"),
            "gewerbeamt".to_owned(),
        );
        DirectorySourceConfig {
            id: id.into(),
            tenant: tenant.into(),
            name: "Stadt Hitzacker (Verzeichnis)".into(),
            kind: DirectoryKind::Openldap,
            servers: vec![self.ldaps_url()],
            ca_pem: Some(self.ca_pem()),
            allow_plain: false,
            base_dn: SUFFIX.into(),
            bind_dn: SERVICE_DN.into(),
            bind_password: Some(SERVICE_PASSWORD.into()),
            user_filter: None,
            users_filter: None,
            attributes: Default::default(),
            groups: None,
            group_base_dn: Some(format!("ou=groups,{SUFFIX}")),
            disabled_filter: None,
            roles,
            domains: vec!["hitzacker.example".into()],
            link_existing: false,
            create_accounts: true,
            connect_timeout_ms: 2000,
            timeout_ms: 2000,
            pool_size: 4,
            max_failures: 4,
            sync_interval_seconds: None,
        }
    }

    /// Runs an LDAP tool (`ldapmodify`, `ldapdelete`, …) as the directory's
    /// administrator, with `input` on stdin.
    pub fn admin_tool(&self, tool: &str, args: &[&str], input: &str) {
        use std::io::Write;
        let mut child = Command::new(tool)
            .env("LDAPTLS_CACERT", self.dir.join("ca.pem"))
            .args([
                "-H",
                &self.ldaps_url(),
                "-x",
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PASSWORD,
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "{tool} failed");
    }

    /// Stops the server (the test goes on without its directory).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Its ports are closed once kill returns and the process is reaped.
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.ldaps_port)).is_ok()
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
