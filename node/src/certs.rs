//! `tandem certs`: a certificate authority and node certificates signed by it, as
//! `elasticsearch-certutil` makes them, for the node's `tls.*` settings.
//!
//! Guarantees:
//! - the CA (`ca.crt`, `ca.key`) is created once per directory and reused by later runs, so
//!   nodes added later are signed by the same CA;
//! - no existing file is overwritten: a node whose files exist is refused;
//! - private keys are created readable by their owner only (mode 0600) and never printed;
//! - a node certificate names the node, `localhost`, `127.0.0.1` and `::1`, and every `--dns`
//!   and `--ip` given, and serves both as a server certificate (the HTTP port) and as a client
//!   certificate (connections to leaders that ask for one).

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// File name of the CA certificate in the output directory.
pub const CA_CERTIFICATE: &str = "ca.crt";
/// File name of the CA private key in the output directory.
pub const CA_KEY: &str = "ca.key";
/// Default validity of the certificates made (`elasticsearch-certutil`'s three years).
pub const DEFAULT_DAYS: u32 = 3 * 365;

/// What `tandem certs` makes.
#[derive(Clone, Debug)]
pub struct CertsRequest {
    /// Directory the files go to (created if missing).
    pub out: PathBuf,
    /// One certificate per node name.
    pub nodes: Vec<String>,
    /// Extra DNS names every node certificate holds.
    pub dns: Vec<String>,
    /// Extra IP addresses every node certificate holds.
    pub ips: Vec<std::net::IpAddr>,
    /// Days the certificates are valid from now.
    pub days: u32,
}

/// Why `tandem certs` stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// A file cannot be read or written.
    #[error("[{path}]: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that would be written exists already.
    #[error("[{0}] exists already; remove it or choose another --out directory")]
    Exists(PathBuf),
    /// Only one of the CA's two files exists.
    #[error("[{present}] exists but [{missing}] does not: a CA needs both")]
    HalfCa {
        /// The file found.
        present: PathBuf,
        /// The file missing.
        missing: PathBuf,
    },
    /// A name or a certificate cannot be made.
    #[error("{0}")]
    Certificate(String),
}

/// The files one run wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertsWritten {
    /// The CA certificate (written or reused).
    pub ca_certificate: PathBuf,
    /// True when this run created the CA.
    pub ca_created: bool,
    /// Per node: its certificate and its key.
    pub nodes: Vec<(PathBuf, PathBuf)>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn certificate_error(error: rcgen::Error) -> CertsError {
    CertsError::Certificate(error.to_string())
}

/// Writes `contents` to a new file at `path` (never over an existing one), readable by its
/// owner only when `private`, and syncs it.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            CertsError::Exists(path.to_path_buf())
        } else {
            CertsError::Io {
                path: path.to_path_buf(),
                source: error,
            }
        }
    })?;
    file.write_all(contents.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A minute back: a peer whose clock is slightly behind accepts the certificate at once.
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// The CA of `out`: read when both its files exist, created otherwise.
fn certificate_authority(
    out: &Path,
    days: u32,
    written: &mut CertsWritten,
) -> Result<Issuer<'static, KeyPair>, CertsError> {
    let (cert_path, key_path) = (out.join(CA_CERTIFICATE), out.join(CA_KEY));
    written.ca_certificate = cert_path.clone();
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|error| {
                CertsError::Certificate(format!("[{}]: {error}", key_path.display()))
            })?;
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|error| {
                CertsError::Certificate(format!("[{}]: {error}", cert_path.display()))
            })
        }
        (true, false) => Err(CertsError::HalfCa {
            present: cert_path,
            missing: key_path,
        }),
        (false, true) => Err(CertsError::HalfCa {
            present: key_path,
            missing: cert_path,
        }),
        (false, false) => {
            let key = KeyPair::generate().map_err(certificate_error)?;
            let mut params = CertificateParams::default();
            // A name of its own: a client holding another Tandem CA then reports an unknown
            // issuer, not a bad signature from a namesake.
            params.distinguished_name = named("Tandem CA");
            params.distinguished_name.push(
                DnType::OrganizationalUnitName,
                uuid::Uuid::new_v4().simple().to_string(),
            );
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params, days);
            let certificate = params.self_signed(&key).map_err(certificate_error)?;
            write_new(&key_path, &key.serialize_pem(), true)?;
            write_new(&cert_path, &certificate.pem(), false)?;
            written.ca_created = true;
            Ok(Issuer::new(params, key))
        }
    }
}

/// Makes (or reuses) the CA of `request.out` and one certificate and key per node.
pub fn make(request: &CertsRequest) -> Result<CertsWritten, CertsError> {
    if request.nodes.is_empty() {
        return Err(CertsError::Certificate(
            "name at least one node (--node NAME)".to_string(),
        ));
    }
    std::fs::create_dir_all(&request.out).map_err(io(&request.out))?;
    // Every node's files are checked before anything is written.
    for node in &request.nodes {
        let valid = !node.is_empty()
            && node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !valid {
            return Err(CertsError::Certificate(format!(
                "invalid node name [{node}]: use letters, digits, '-', '_' and '.'"
            )));
        }
        for path in node_files(&request.out, node) {
            if path.exists() {
                return Err(CertsError::Exists(path));
            }
        }
    }
    let mut written = CertsWritten::default();
    let ca = certificate_authority(&request.out, request.days, &mut written)?;
    for node in &request.nodes {
        let mut names = vec![
            node.clone(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        names.extend(request.dns.iter().cloned());
        names.extend(request.ips.iter().map(|ip| ip.to_string()));
        names.dedup();
        let mut params = CertificateParams::new(names).map_err(certificate_error)?;
        params.distinguished_name = named(node);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, request.days);
        let key = KeyPair::generate().map_err(certificate_error)?;
        let certificate = params.signed_by(&key, &ca).map_err(certificate_error)?;
        let [cert_path, key_path] = node_files(&request.out, node);
        write_new(&key_path, &key.serialize_pem(), true)?;
        write_new(&cert_path, &certificate.pem(), false)?;
        written.nodes.push((cert_path, key_path));
    }
    Ok(written)
}

fn node_files(out: &Path, node: &str) -> [PathBuf; 2] {
    [
        out.join(format!("{node}.crt")),
        out.join(format!("{node}.key")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(out: &Path, nodes: &[&str]) -> CertsRequest {
        CertsRequest {
            out: out.to_path_buf(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            dns: vec!["tandem.example".to_string()],
            ips: vec!["10.1.2.3".parse().unwrap()],
            days: DEFAULT_DAYS,
        }
    }

    #[test]
    fn a_ca_is_made_once_and_signs_later_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let first = make(&request(dir.path(), &["a", "b"])).unwrap();
        assert!(first.ca_created);
        assert_eq!(first.nodes.len(), 2);
        let ca_before = std::fs::read(dir.path().join(CA_CERTIFICATE)).unwrap();
        let later = make(&request(dir.path(), &["c"])).unwrap();
        assert!(!later.ca_created);
        assert_eq!(
            std::fs::read(dir.path().join(CA_CERTIFICATE)).unwrap(),
            ca_before
        );
        // Each node's certificate and key make a server configuration that rustls accepts.
        for node in ["a", "b", "c"] {
            let files = tandem_transport::tls::TlsFiles {
                certificate: dir.path().join(format!("{node}.crt")),
                key: dir.path().join(format!("{node}.key")),
                certificate_authorities: vec![dir.path().join(CA_CERTIFICATE)],
                client_authentication: tandem_transport::tls::ClientAuthentication::Required,
            };
            tandem_transport::tls::server_config(&files).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [CA_KEY, "a.key", "c.key"] {
                let mode = std::fs::metadata(dir.path().join(key))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }
    }

    #[test]
    fn nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        make(&request(dir.path(), &["a"])).unwrap();
        let key = std::fs::read(dir.path().join("a.key")).unwrap();
        assert!(matches!(
            make(&request(dir.path(), &["b", "a"])),
            Err(CertsError::Exists(_))
        ));
        assert!(
            !dir.path().join("b.crt").exists(),
            "nothing written on refusal"
        );
        assert_eq!(std::fs::read(dir.path().join("a.key")).unwrap(), key);
        std::fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        assert!(matches!(
            make(&request(dir.path(), &["b"])),
            Err(CertsError::HalfCa { .. })
        ));
        assert!(matches!(
            make(&request(dir.path(), &["../x"])),
            Err(CertsError::Certificate(_))
        ));
    }
}
