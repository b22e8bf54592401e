//! TLS for the page-facing WebSocket (`wss://`): rustls with the *ring* provider, a certificate
//! from `--cert`/`--key` or a self-signed one for `127.0.0.1`/`localhost` generated with rcgen
//! (at install / `ExecStartPre=` by `vdimedia-bridge --make-cert`, else on first start) and kept
//! in the state directory. The generated certificate is valid for [`CERT_VALIDITY_DAYS`] and
//! renewed [`RENEW_BEFORE_DAYS`] before it expires, with the same key, so the SPKI pin that
//! browsers may have been given stays valid.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File name of the generated certificate inside the state directory.
pub const GENERATED_CERT: &str = "bridge-cert.pem";
/// File name of the generated private key (mode 0600) inside the state directory.
pub const GENERATED_KEY: &str = "bridge-key.pem";
/// Validity of a generated certificate, in days.
pub const CERT_VALIDITY_DAYS: i64 = 365;
/// A generated certificate that expires within this many days is renewed.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// What [`ensure_generated`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertAction {
    /// There was no certificate: a new key and certificate were written.
    Created,
    /// The certificate expired or would within [`RENEW_BEFORE_DAYS`]: a new one was signed
    /// with the existing key.
    Renewed,
    /// The certificate is valid for longer than [`RENEW_BEFORE_DAYS`].
    Kept,
}

impl CertAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CertAction::Created => "created",
            CertAction::Renewed => "renewed",
            CertAction::Kept => "kept",
        }
    }
}

/// The generated certificate after [`ensure_generated`].
#[derive(Debug, Clone)]
pub struct CertStatus {
    pub action: CertAction,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// End of validity, Unix seconds (UTC).
    pub not_after: i64,
}

/// What the WebSocket listener serves TLS with.
#[derive(Clone)]
pub struct TlsMaterial {
    /// rustls server configuration (TLS 1.2 and 1.3, ALPN `http/1.1`).
    pub server_config: Arc<rustls::ServerConfig>,
    /// The leaf certificate (DER), e.g. for a test client's root store.
    pub cert_der: CertificateDer<'static>,
    /// Base64 of SHA-256 over the leaf's DER SubjectPublicKeyInfo: the value Chromium takes in
    /// `--ignore-certificate-errors-spki-list`.
    pub spki_sha256: String,
    /// Where the certificate was read from (or written to).
    pub cert_path: PathBuf,
    /// Whether this start generated (created or renewed) the certificate.
    pub generated: bool,
    /// End of the leaf's validity, Unix seconds (UTC).
    pub not_after: i64,
}

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a PEM {what}: {message}")]
    Pem { path: PathBuf, what: &'static str, message: String },
    #[error("{path}: the certificate cannot be parsed: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("found {present} but not {missing}: delete it to regenerate both, or pass --cert/--key")]
    HalfGenerated { present: PathBuf, missing: PathBuf },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads `cert`/`key`, or (when both are `None`) the generated pair from `state_dir`,
/// generating it first if absent.
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    state_dir: &Path,
) -> Result<TlsMaterial, TlsError> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), false),
        _ => {
            let st = ensure_generated(state_dir, time::OffsetDateTime::now_utc())?;
            (st.cert_path, st.key_path, st.action != CertAction::Kept)
        }
    };
    let cert_pem =
        fs::read(&cert_path).map_err(|source| TlsError::Read { path: cert_path.clone(), source })?;
    let key_pem = fs::read(&key_path).map_err(|source| TlsError::Read { path: key_path.clone(), source })?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<_, _>>().map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            what: "certificate",
            message: e.to_string(),
        })?;
    let Some(leaf) = chain.first().cloned() else {
        return Err(TlsError::Pem {
            path: cert_path,
            what: "certificate",
            message: "no CERTIFICATE block".into(),
        });
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key_path.clone(),
        what: "private key",
        message: e.to_string(),
    })?;
    let spki_sha256 =
        spki_sha256(&leaf).map_err(|message| TlsError::Certificate { path: cert_path.clone(), message })?;
    let not_after =
        not_after(&leaf).map_err(|message| TlsError::Certificate { path: cert_path.clone(), message })?;
    let left_days = (not_after - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
    if left_days < RENEW_BEFORE_DAYS {
        tracing::warn!(cert = %cert_path.display(), days_left = left_days, "the TLS certificate expires soon (or has expired): browsers will refuse it");
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        server_config: Arc::new(server_config),
        cert_der: leaf,
        spki_sha256,
        cert_path,
        generated,
        not_after,
    })
}

/// End of a certificate's validity (Unix seconds, UTC).
pub fn not_after(cert: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
    Ok(c.validity().not_after.timestamp())
}

/// Makes sure `state_dir` holds a generated certificate valid for more than
/// [`RENEW_BEFORE_DAYS`] after `now`: creates key and certificate when both are missing,
/// re-signs the certificate with the existing key when it expires sooner, and refuses a
/// half-generated pair or a certificate it cannot parse (rather than overwrite what an
/// administrator may have put there). Run as root (a package's postinst), files it writes are
/// given to the owner of `state_dir`, the service's user.
pub fn ensure_generated(state_dir: &Path, now: time::OffsetDateTime) -> Result<CertStatus, TlsError> {
    let c = state_dir.join(GENERATED_CERT);
    let k = state_dir.join(GENERATED_KEY);
    let (action, not_after) = match (c.exists(), k.exists()) {
        (false, false) => (CertAction::Created, generate(state_dir, &c, &k, None, now)?),
        (true, false) => return Err(TlsError::HalfGenerated { present: c, missing: k }),
        (false, true) => return Err(TlsError::HalfGenerated { present: k, missing: c }),
        (true, true) => {
            let pem = fs::read(&c).map_err(|source| TlsError::Read { path: c.clone(), source })?;
            let leaf = CertificateDer::pem_slice_iter(&pem).next().ok_or_else(|| TlsError::Pem {
                path: c.clone(),
                what: "certificate",
                message: "no CERTIFICATE block".into(),
            })?;
            let leaf = leaf.map_err(|e| TlsError::Pem {
                path: c.clone(),
                what: "certificate",
                message: e.to_string(),
            })?;
            let old =
                not_after(&leaf).map_err(|message| TlsError::Certificate { path: c.clone(), message })?;
            if old - now.unix_timestamp() > RENEW_BEFORE_DAYS * 86_400 {
                (CertAction::Kept, old)
            } else {
                let key_pem =
                    fs::read_to_string(&k).map_err(|source| TlsError::Read { path: k.clone(), source })?;
                let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Pem {
                    path: k.clone(),
                    what: "private key",
                    message: e.to_string(),
                })?;
                let new = generate(state_dir, &c, &k, Some(key), now)?;
                tracing::info!(cert = %c.display(), old_not_after = old, not_after = new, "renewed the self-signed certificate (same key, same SPKI pin)");
                (CertAction::Renewed, new)
            }
        }
    };
    Ok(CertStatus { action, cert_path: c, key_path: k, not_after })
}

/// Base64 (standard, padded) of SHA-256 over the certificate's DER SubjectPublicKeyInfo, as
/// Chromium's `--ignore-certificate-errors-spki-list` and HPKP-style pins expect.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<String, String> {
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("{e:?}"))?;
    let spki = ee.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// Writes a certificate valid from `now` - 1 h for [`CERT_VALIDITY_DAYS`], signed with `key`
/// (or a new ECDSA P-256 key, written too); returns its not-after (Unix seconds).
fn generate(
    state_dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    key: Option<rcgen::KeyPair>,
    now: time::OffsetDateTime,
) -> Result<i64, TlsError> {
    if !state_dir.exists() {
        fs::create_dir_all(state_dir).map_err(|source| TlsError::Write { path: state_dir.into(), source })?;
        // The directory holds a private key: keep it to the service's user.
        fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700))
            .map_err(|source| TlsError::Write { path: state_dir.into(), source })?;
    }
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "vdimedia-bridge 127.0.0.1");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "vdimedia");
    // A small skew allowance for clocks; a bounded life so a leaked key does not stay good.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CERT_VALIDITY_DAYS);
    let not_after = params.not_after.unix_timestamp();
    let (key_pair, new_key) = match key {
        Some(k) => (k, false),
        None => (rcgen::KeyPair::generate()?, true),
    };
    let cert = params.self_signed(&key_pair)?;
    // Key first, both via a temporary name and rename, so a crash never leaves a certificate
    // without its key.
    if new_key {
        write_atomic(key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
        give_to_dir_owner(state_dir, key_path)?;
    }
    write_atomic(cert_path, cert.pem().as_bytes(), 0o644)?;
    give_to_dir_owner(state_dir, cert_path)?;
    tracing::info!(cert = %cert_path.display(), key = %key_path.display(), days = CERT_VALIDITY_DAYS, "generated a self-signed certificate for 127.0.0.1/localhost");
    Ok(not_after)
}

/// Run as root (e.g. a package's postinst), a file written into the service's state directory
/// must still be readable by the service's user.
fn give_to_dir_owner(dir: &Path, file: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let m = fs::metadata(dir).map_err(|source| TlsError::Write { path: dir.into(), source })?;
    if m.uid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::chown(file, Some(m.uid()), Some(m.gid()))
        .map_err(|source| TlsError::Write { path: file.into(), source })
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let err = |source| TlsError::Write { path: path.into(), source };
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = std::env::temp_dir().join(format!("vdimedia-bridge-tls-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = load_or_generate(None, None, &dir).unwrap();
        assert!(a.generated);
        let mode = fs::metadata(dir.join(GENERATED_KEY)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_generate(None, None, &dir).unwrap();
        assert!(!b.generated);
        let left = b.not_after - time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((CERT_VALIDITY_DAYS - 1) * 86_400 < left && left <= CERT_VALIDITY_DAYS * 86_400, "{left}");

        // 340 days later it is renewed with the same key (same SPKI pin), valid a year again.
        let later = time::OffsetDateTime::now_utc() + time::Duration::days(340);
        let st = ensure_generated(&dir, later).unwrap();
        assert_eq!(st.action, CertAction::Renewed);
        assert!(st.not_after > b.not_after + 300 * 86_400);
        let c = load_or_generate(None, None, &dir).unwrap();
        assert_eq!(c.spki_sha256, a.spki_sha256);
        assert_ne!(c.cert_der, a.cert_der);
        assert_eq!(ensure_generated(&dir, time::OffsetDateTime::now_utc()).unwrap().action, CertAction::Kept);
        assert_eq!(a.spki_sha256, b.spki_sha256);
        assert_eq!(a.cert_der, b.cert_der);
        // 32 bytes of SHA-256 in padded base64.
        assert_eq!(a.spki_sha256.len(), 44);

        fs::remove_file(dir.join(GENERATED_KEY)).unwrap();
        assert!(matches!(load_or_generate(None, None, &dir), Err(TlsError::HalfGenerated { .. })));
        fs::write(dir.join("junk.pem"), "not pem").unwrap();
        let e = load_or_generate(Some(&dir.join("junk.pem")), Some(&dir.join("junk.pem")), &dir);
        assert!(matches!(e, Err(TlsError::Pem { .. })), "{:?}", e.err());
        fs::remove_dir_all(&dir).ok();
    }
}
