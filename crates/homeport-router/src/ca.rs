//! Local HTTPS: a certificate authority made on this machine (its key never leaves the data
//! folder, 0600), and leaf certificates for the router's names, made when a browser first asks
//! for one and kept in memory.
//!
//! The CA's subject ends in a short id derived from its public key, so the trust stores can tell
//! this CA from another machine's or an earlier one, and the issuer name of every leaf can be
//! rebuilt from the key file alone.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use crate::host;

/// The file names under the CA's folder.
pub const CERT_FILE: &str = "homeport-ca.pem";
pub const KEY_FILE: &str = "homeport-ca.key";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a key this router can use ({why}); move it away to make a new CA")]
    BadKey { path: PathBuf, why: String },
    #[error("cannot make a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The local CA: its certificate (public, for the trust stores) and what signs leaves.
pub struct LocalCa {
    dir: PathBuf,
    id: String,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Opens the CA in `dir`, making one (folder 0700, key 0600) if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| CaError::Io { what, path, source }
        };
        homeport_fs::create_private_dir(dir).map_err(io("create", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("restrict", dir))?;
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => {
                std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io("restrict", &key_path))?;
                KeyPair::from_pem(&pem).map_err(|e| CaError::BadKey {
                    path: key_path.clone(),
                    why: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate()?;
                homeport_fs::atomic_write(&key_path, key.serialize_pem().as_bytes(), 0o600)
                    .map_err(io("write", &key_path))?;
                // A certificate left from an earlier key would not match this one.
                let _ = std::fs::remove_file(&cert_path);
                key
            }
            Err(e) => return Err(io("read", &key_path)(e)),
        };
        let params = ca_params(&key);
        let id = ca_id(&params, &key);
        let cert_pem = match std::fs::read_to_string(&cert_path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let cert = params.self_signed(&key)?;
                let pem = cert.pem();
                homeport_fs::atomic_write(&cert_path, pem.as_bytes(), 0o644)
                    .map_err(io("write", &cert_path))?;
                pem
            }
            Err(e) => return Err(io("read", &cert_path)(e)),
        };
        let cert_der = pem_to_der(&cert_pem).ok_or_else(|| CaError::BadKey {
            path: cert_path.clone(),
            why: "no certificate in it".into(),
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            id,
            cert_pem,
            cert_der,
            issuer: Issuer::new(params, key),
        })
    }

    /// The short id in the CA's name, e.g. `3fa9c2d1`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The CA's common name, as trust stores list it.
    pub fn name(&self) -> String {
        ca_name(&self.id)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// A certificate for `name`, signed by this CA, for a key of the caller's.
    fn leaf(&self, name: &str, key: &KeyPair) -> Result<CertificateDer<'static>, CaError> {
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::DnsName(name.try_into()?)];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(LEAF_DAYS);
        // Every leaf shares one key, so the serial cannot come from the key: browsers refuse
        // two certificates of one issuer with the same serial.
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| CaError::Io {
            what: "draw a serial number for",
            path: PathBuf::from(name),
            source: e.into(),
        })?;
        serial[0] &= 0x7f;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        Ok(p.signed_by(key, &self.issuer)?.der().clone())
    }
}

/// Leaves are short-lived and remade while the agent runs, well before they expire.
const LEAF_DAYS: i64 = 30;
const LEAF_RENEW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Names whose leaves are kept; past this the cache starts over (names come from requests).
const LEAF_CACHE: usize = 1024;

fn ca_name(id: &str) -> String {
    format!("Homeport local CA {id}")
}

fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut p = CertificateParams::default();
    let id = ca_id(&p, key);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_name(&id));
    dn.push(DnType::OrganizationName, "Homeport");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(3650);
    p
}

fn ca_id(p: &CertificateParams, key: &KeyPair) -> String {
    let kid = p.key_identifier(key);
    homeport_fs::hex(&kid[..kid.len().min(4)])
}

fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64_decode(&b64).map(CertificateDer::from)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Picks (and makes, the first time) the certificate for the name a TLS client asks for.
pub(crate) struct Resolver {
    ca: Arc<LocalCa>,
    /// One key for every leaf: making a P-256 key per name would cost more than the signature.
    key: KeyPair,
    signing: Arc<dyn rustls::sign::SigningKey>,
    /// Which names may get a certificate besides `*.localhost`.
    known: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    cache: Mutex<HashMap<String, (Instant, Arc<CertifiedKey>)>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub(crate) fn new(
        ca: Arc<LocalCa>,
        known: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)?;
        Ok(Self {
            ca,
            key,
            signing,
            known,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn certified(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((made, ck)) = cache.get(name)
            && made.elapsed() < LEAF_RENEW
        {
            return Some(Arc::clone(ck));
        }
        let leaf = match self.ca.leaf(name, &self.key) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("cannot make a certificate for {name}: {e}");
                return None;
            }
        };
        let ck = Arc::new(CertifiedKey::new(
            vec![leaf, self.ca.cert_der.clone()],
            Arc::clone(&self.signing),
        ));
        if cache.len() >= LEAF_CACHE {
            cache.clear();
        }
        cache.insert(name.to_owned(), (Instant::now(), Arc::clone(&ck)));
        Some(ck)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = host::request_name(hello.server_name()?)?;
        if !(name.ends_with(".localhost") || (self.known)(&name)) {
            return None;
        }
        self.certified(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_with_a_private_key_and_kept() -> Result<(), CaError> {
        let dir = tempfile::tempdir().map_err(|e| CaError::Io {
            what: "make",
            path: "tmp".into(),
            source: e,
        })?;
        let ca_dir = dir.path().join("ca");
        let first = LocalCa::load_or_create(&ca_dir)?;
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&ca_dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
        let again = LocalCa::load_or_create(&ca_dir)?;
        assert_eq!(first.cert_pem(), again.cert_pem());
        assert_eq!(first.id(), again.id());
        assert_eq!(first.cert_der(), again.cert_der());
        assert!(again.name().starts_with("Homeport local CA "));
        Ok(())
    }

    #[test]
    fn a_key_left_readable_by_others_is_made_private_again() -> Result<(), CaError> {
        let dir = tempfile::tempdir().map_err(|e| CaError::Io {
            what: "make",
            path: "tmp".into(),
            source: e,
        })?;
        LocalCa::load_or_create(dir.path())?;
        let key = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).ok();
        LocalCa::load_or_create(dir.path())?;
        let mode = std::fs::metadata(&key).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        Ok(())
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(
            base64_decode("aGVsbG8gd29ybGQ=").as_deref(),
            Some(&b"hello world"[..])
        );
        assert_eq!(base64_decode("*"), None);
    }
}
