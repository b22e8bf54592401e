//! TLS for the page-facing WebSocket (`wss://`): rustls with the *ring* provider, a certificate
//! from `--cert`/`--key` or a self-signed one for `127.0.0.1`/`localhost` generated with rcgen
//! on first start and kept in the state directory.

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
    /// Whether this start generated the certificate.
    pub generated: bool,
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
            let c = state_dir.join(GENERATED_CERT);
            let k = state_dir.join(GENERATED_KEY);
            let generated = match (c.exists(), k.exists()) {
                (true, true) => false,
                (false, false) => {
                    generate(state_dir, &c, &k)?;
                    true
                }
                (true, false) => {
                    return Err(TlsError::HalfGenerated { present: c, missing: k });
                }
                (false, true) => {
                    return Err(TlsError::HalfGenerated { present: k, missing: c });
                }
            };
            (c, k, generated)
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
    })
}

/// Base64 (standard, padded) of SHA-256 over the certificate's DER SubjectPublicKeyInfo, as
/// Chromium's `--ignore-certificate-errors-spki-list` and HPKP-style pins expect.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<String, String> {
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("{e:?}"))?;
    let spki = ee.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

fn generate(state_dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
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
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    // Key first, both via a temporary name and rename, so a crash never leaves a certificate
    // without its key.
    write_atomic(key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), key = %key_path.display(), "generated a self-signed certificate for 127.0.0.1/localhost");
    Ok(())
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
