//! `homeport trust`: put the local CA into the stores browsers and tools read, take it out, and
//! say where it is. Each store is tried and reported on its own: a missing tool or a refused
//! `sudo` for one does not stop the others.
//!
//! - the system store: Debian's `update-ca-certificates` (curl, Python, Go, most CLIs read it);
//! - NSS databases, which Chromium (`~/.pki/nssdb`) and Firefox (one per profile) read, through
//!   `certutil` from libnss3-tools.
//!
//! macOS keeps its trust in the keychain; docs/router.md gives the `security add-trusted-cert`
//! line instead of this module doing it untested.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::LocalCa;

/// Where Debian takes local CA certificates from.
const DEBIAN_DIR: &str = "/usr/local/share/ca-certificates";
/// The bundle `update-ca-certificates` writes.
const DEBIAN_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Which stores a command touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stores {
    pub system: bool,
    pub nss: bool,
}

impl Stores {
    pub const ALL: Stores = Stores {
        system: true,
        nss: true,
    };
}

/// What happened in one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReport {
    /// The store, as a person knows it: "system store (update-ca-certificates)",
    /// "NSS database ~/.pki/nssdb (Chromium)".
    pub store: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The CA is trusted there (after an install, or as found by `status`).
    Trusted,
    /// The CA is not there (after an uninstall, or as found by `status`).
    NotTrusted,
    /// Not tried, and why (a tool that is not installed, no such store).
    Skipped(String),
    /// Tried and failed: what to do about it.
    Failed(String),
}

impl StoreReport {
    pub fn ok(&self) -> bool {
        !matches!(self.outcome, Outcome::Failed(_))
    }
}

/// The CA as the stores know it, and the user whose stores they are.
pub struct Trust {
    cert_path: PathBuf,
    cert_pem: String,
    nickname: String,
    id: String,
    home: PathBuf,
}

impl Trust {
    pub fn new(ca: &LocalCa, home: &Path) -> Self {
        Self {
            cert_path: ca.cert_path(),
            cert_pem: ca.cert_pem().to_owned(),
            nickname: ca.name(),
            id: ca.id().to_owned(),
            home: home.to_owned(),
        }
    }

    pub fn install(&self, stores: Stores) -> Vec<StoreReport> {
        let mut out = Vec::new();
        if stores.system {
            out.push(self.system_install());
        }
        if stores.nss {
            out.extend(self.nss_each(true, |db| self.nss_install(db)));
        }
        out
    }

    pub fn uninstall(&self, stores: Stores) -> Vec<StoreReport> {
        let mut out = Vec::new();
        if stores.system {
            out.push(self.system_uninstall());
        }
        if stores.nss {
            out.extend(self.nss_each(false, |db| self.nss_uninstall(db)));
        }
        out
    }

    pub fn status(&self) -> Vec<StoreReport> {
        let mut out = vec![self.system_status()];
        out.extend(self.nss_each(false, |db| self.nss_status(db)));
        out
    }

    fn system_file(&self) -> PathBuf {
        Path::new(DEBIAN_DIR).join(format!("homeport-{}.crt", self.id))
    }

    fn system_name() -> String {
        "system store (update-ca-certificates)".into()
    }

    fn system_report(outcome: Outcome) -> StoreReport {
        StoreReport {
            store: Self::system_name(),
            outcome,
        }
    }

    fn system_status(&self) -> StoreReport {
        if !Path::new(DEBIAN_DIR).exists() {
            return Self::system_report(Outcome::Skipped(format!(
                "{DEBIAN_DIR} does not exist (not Debian or Ubuntu)"
            )));
        }
        let copied = std::fs::read_to_string(self.system_file()).is_ok_and(|c| c == self.cert_pem);
        let body = pem_body(&self.cert_pem);
        let bundled = std::fs::read_to_string(DEBIAN_BUNDLE).is_ok_and(|b| {
            body.as_deref()
                .is_some_and(|body| strip_ws(&b).contains(body))
        });
        Self::system_report(match (copied, bundled) {
            (true, true) => Outcome::Trusted,
            (true, false) => Outcome::Failed(format!(
                "{} is there but {DEBIAN_BUNDLE} does not have it: run `sudo update-ca-certificates`",
                self.system_file().display()
            )),
            (false, true) => Outcome::Failed(format!(
                "{DEBIAN_BUNDLE} still has it: run `sudo update-ca-certificates --fresh`"
            )),
            (false, false) => Outcome::NotTrusted,
        })
    }

    fn system_install(&self) -> StoreReport {
        if !Path::new(DEBIAN_DIR).exists() || which("update-ca-certificates").is_none() {
            return Self::system_report(Outcome::Skipped(
                "update-ca-certificates is not installed (Debian's ca-certificates package)".into(),
            ));
        }
        let dest = self.system_file();
        let steps: [Vec<String>; 2] = [
            vec![
                "install".into(),
                "-m".into(),
                "0644".into(),
                self.cert_path.display().to_string(),
                dest.display().to_string(),
            ],
            vec!["update-ca-certificates".into()],
        ];
        for step in steps {
            if let Err(e) = run_as_root(&step) {
                return Self::system_report(Outcome::Failed(e));
            }
        }
        self.system_status()
    }

    fn system_uninstall(&self) -> StoreReport {
        if !Path::new(DEBIAN_DIR).exists() {
            return self.system_status();
        }
        let dest = self.system_file();
        if dest.exists() {
            let steps: [Vec<String>; 2] = [
                vec!["rm".into(), "-f".into(), dest.display().to_string()],
                vec!["update-ca-certificates".into(), "--fresh".into()],
            ];
            for step in steps {
                if let Err(e) = run_as_root(&step) {
                    return Self::system_report(Outcome::Failed(e));
                }
            }
        }
        self.system_status()
    }

    /// Chromium's database and every Firefox profile's. `create` makes Chromium's when it is
    /// missing (Chromium would make it at its first start and then use it).
    fn nss_each(&self, create: bool, f: impl Fn(&Path) -> Outcome) -> Vec<StoreReport> {
        let mut dbs: Vec<(PathBuf, String)> = Vec::new();
        let chromium = self.home.join(".pki/nssdb");
        dbs.push((chromium.clone(), "Chromium".into()));
        for root in [".mozilla/firefox", "snap/firefox/common/.mozilla/firefox"] {
            if let Ok(rd) = std::fs::read_dir(self.home.join(root)) {
                let mut profiles: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("cert9.db").exists())
                    .collect();
                profiles.sort();
                dbs.extend(profiles.into_iter().map(|p| (p, "Firefox".into())));
            }
        }
        let shown = |p: &Path| match p.strip_prefix(&self.home) {
            Ok(rest) => format!("~/{}", rest.display()),
            Err(_) => p.display().to_string(),
        };
        let Some(certutil) = which("certutil") else {
            return vec![StoreReport {
                store: "NSS databases (Chromium, Firefox)".into(),
                outcome: Outcome::Skipped(
                    "certutil is not installed: `sudo apt install libnss3-tools`".into(),
                ),
            }];
        };
        let mut out = Vec::new();
        for (db, who) in dbs {
            let store = format!("NSS database {} ({who})", shown(&db));
            let exists = db.join("cert9.db").exists();
            if !(exists || create && who == "Chromium") {
                out.push(StoreReport {
                    store,
                    outcome: Outcome::Skipped("no such database".into()),
                });
                continue;
            }
            if !exists {
                let made = std::fs::create_dir_all(&db)
                    .map_err(|e| e.to_string())
                    .and_then(|()| run(&certutil, &["-N", "-d", &sql(&db), "--empty-password"]));
                if let Err(e) = made {
                    out.push(StoreReport {
                        store,
                        outcome: Outcome::Failed(format!("cannot create it: {e}")),
                    });
                    continue;
                }
            }
            out.push(StoreReport {
                store,
                outcome: f(&db),
            });
        }
        out
    }

    fn nss_status(&self, db: &Path) -> Outcome {
        let Some(certutil) = which("certutil") else {
            return Outcome::Skipped("certutil is not installed".into());
        };
        match run(&certutil, &["-L", "-d", &sql(db), "-n", &self.nickname]) {
            Ok(()) => Outcome::Trusted,
            Err(_) => Outcome::NotTrusted,
        }
    }

    fn nss_install(&self, db: &Path) -> Outcome {
        let Some(certutil) = which("certutil") else {
            return Outcome::Skipped("certutil is not installed".into());
        };
        let cert = self.cert_path.display().to_string();
        let args = [
            "-A",
            "-d",
            &sql(db),
            "-t",
            "C,,",
            "-n",
            &self.nickname,
            "-i",
            &cert,
        ];
        match run(&certutil, &args) {
            Ok(()) => self.nss_status(db),
            Err(e) => Outcome::Failed(e),
        }
    }

    fn nss_uninstall(&self, db: &Path) -> Outcome {
        let Some(certutil) = which("certutil") else {
            return Outcome::Skipped("certutil is not installed".into());
        };
        // A nickname can be there more than once (installed twice by an older tool).
        for _ in 0..8 {
            if run(&certutil, &["-D", "-d", &sql(db), "-n", &self.nickname]).is_err() {
                break;
            }
        }
        self.nss_status(db)
    }
}

fn sql(db: &Path) -> String {
    format!("sql:{}", db.display())
}

fn pem_body(pem: &str) -> Option<String> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    (!body.is_empty()).then_some(body)
}

fn strip_ws(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn run(program: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            err.trim()
        ))
    }
}

/// Runs `argv` as root: directly when we are root, else through `sudo` (which may ask for a
/// password on the terminal).
fn run_as_root(argv: &[String]) -> Result<(), String> {
    let is_root = nix_euid() == 0;
    let (program, args): (PathBuf, Vec<&str>) = if is_root {
        let Some(p) = which(&argv[0]) else {
            return Err(format!("{} is not installed", argv[0]));
        };
        (p, argv[1..].iter().map(String::as_str).collect())
    } else {
        let Some(sudo) = which("sudo") else {
            return Err(format!(
                "this needs root and sudo is not installed: run `{}` as root",
                argv.join(" ")
            ));
        };
        (sudo, argv.iter().map(String::as_str).collect())
    };
    let status = Command::new(&program)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed ({status}); run it yourself as root, then `homeport trust status`",
            argv.join(" ")
        ))
    }
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_nss_database_gets_the_ca_and_loses_it_again() {
        if which("certutil").is_none() {
            eprintln!(
                "skipped: certutil is not installed (scripts/setup.sh installs libnss3-tools)"
            );
            return;
        }
        let home = tempfile::tempdir().expect("home");
        let ca = LocalCa::load_or_create(&home.path().join("data/ca")).expect("ca");
        let trust = Trust::new(&ca, home.path());
        let nss = Stores {
            system: false,
            nss: true,
        };
        let before = trust.uninstall(nss);
        assert!(
            before.iter().all(|r| r.outcome != Outcome::Trusted),
            "{before:?}"
        );
        let after = trust.install(nss);
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!(after[0].store, "NSS database ~/.pki/nssdb (Chromium)");
        assert_eq!(after[0].outcome, Outcome::Trusted);
        // A Firefox profile appears: the next install covers it too.
        let profile = home.path().join(".mozilla/firefox/abc.default-release");
        std::fs::create_dir_all(&profile).expect("profile");
        run(
            &which("certutil").expect("certutil"),
            &["-N", "-d", &sql(&profile), "--empty-password"],
        )
        .expect("firefox db");
        let status = trust.status();
        let firefox = status
            .iter()
            .find(|r| r.store.contains("Firefox"))
            .expect("firefox listed");
        assert_eq!(firefox.outcome, Outcome::NotTrusted);
        let after = trust.install(nss);
        assert!(
            after.iter().all(|r| r.outcome == Outcome::Trusted),
            "{after:?}"
        );
        let gone = trust.uninstall(nss);
        assert!(
            gone.iter().all(|r| r.outcome == Outcome::NotTrusted),
            "{gone:?}"
        );
    }

    #[test]
    fn pem_bodies_compare_without_line_breaks() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\nBBBB\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_body(pem).as_deref(), Some("AAAABBBB"));
        assert!(strip_ws("x\n-----BEGIN X-----\nAAAA\nBBBB\n").contains("AAAABBBB"));
    }
}
