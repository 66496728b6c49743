//! TLS for a node's HTTP port (REST and the transport share it) and for its connections to
//! remote clusters: PEM files in, rustls configurations out, with one crypto provider (aws-lc-rs).
//!
//! Guarantees:
//! - a certificate, key or certificate authority that cannot be used is refused when the
//!   configuration is built, with the file and the reason ([`TlsError`]), never at the first
//!   connection;
//! - a connection to a remote cluster verifies the leader's certificate chain against the
//!   configured certificate authorities only (no system roots), and its name against the
//!   address dialled (a host name or an IP address in the certificate's subject alternative
//!   names), as any HTTPS client does;
//! - the server asks for client certificates only when [`ClientAuthentication`] says so, and
//!   then verifies them against the same certificate authorities.
//!
//! The configurations here name their provider; [`crate::HttpLeaderClient`] needs no other.
//! reqwest (the node's command-line tools and tests use it) is built with rustls but without a
//! crypto provider of its own (one provider, not two, is compiled in): a `reqwest::Client`
//! built without a preconfigured TLS configuration takes the process's default provider and
//! panics when there is none. Whoever builds one calls [`install_default_provider`] first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the {what} [{path}]: {source}")]
    Read {
        /// What the file was for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no PEM block of the kind expected, or a malformed one.
    #[error("the {what} [{path}] {problem}")]
    Pem {
        /// What the file was for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the combination (a key that does not match its certificate, a
    /// certificate authority it cannot parse).
    #[error("{0}")]
    Rejected(String),
}

/// Whether the HTTP port asks clients for a certificate (Elasticsearch's
/// `xpack.security.http.ssl.client_authentication`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuthentication {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client may present one; if it does, it must verify.
    Optional,
    /// Every client must present a certificate that verifies.
    Required,
}

impl ClientAuthentication {
    /// Parses `none`, `optional` or `required`.
    pub fn parse(text: &str) -> Option<ClientAuthentication> {
        match text {
            "none" => Some(ClientAuthentication::None),
            "optional" => Some(ClientAuthentication::Optional),
            "required" => Some(ClientAuthentication::Required),
            _ => None,
        }
    }
}

/// The files of a node's TLS set-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM), its own certificate first.
    pub certificate: PathBuf,
    /// The node's private key (PEM: PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
    /// Certificate authorities (PEM) trusted for remote clusters' certificates and for client
    /// certificates.
    pub certificate_authorities: Vec<PathBuf>,
    /// Whether clients are asked for certificates.
    pub client_authentication: ClientAuthentication,
}

/// The only crypto provider Tandem uses: aws-lc-rs's defaults, AES-128-GCM preferred.
///
/// AES-128-GCM is as much a TLS 1.3 default as AES-256-GCM (it is the one suite every TLS 1.3
/// peer must support) and takes 10 AES rounds to its 14 (0.089 against 0.110 ms per MiB opened,
/// `security_overhead`'s `aes_gcm_open_*`); a recovery over TLS spends close to a tenth of the
/// follower's time decrypting, so the shorter cipher is the faster copy. The connection
/// uses the first suite of the client's list the server also has, so Tandem's connections to
/// remote clusters pick it; other clients keep their own preference.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort: the AES-128-GCM suites move to the front, the rest keep their order.
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// Makes aws-lc-rs the process's default rustls provider, unless one is installed already
/// (see the module documentation). Idempotent and cheap.
pub fn install_default_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // An embedder's provider, installed before, stays.
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::aws_lc_rs::default_provider(),
        );
    });
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of the PEM file at `path`; at least one.
pub fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            problem: format!("is not valid PEM: {error}"),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_path_buf(),
            problem: "holds no CERTIFICATE block".to_string(),
        });
    }
    Ok(certificates)
}

/// The private key of the PEM file at `path`.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "private key";
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        problem: format!("holds no usable private key: {error}"),
    })
}

/// The trust store of `certificate_authorities`.
fn root_store(certificate_authorities: &[PathBuf]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for path in certificate_authorities {
        for certificate in read_certificates("certificate authority", path)? {
            roots.add(certificate).map_err(|error| TlsError::Pem {
                what: "certificate authority",
                path: path.clone(),
                problem: format!("holds a certificate that cannot be trusted: {error}"),
            })?;
        }
    }
    Ok(roots)
}

/// The server side of the HTTP port.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates("certificate", &files.certificate)?;
    let key = read_private_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Rejected(error.to_string()))?;
    let builder = match files.client_authentication {
        ClientAuthentication::None => builder.with_no_client_auth(),
        asked => {
            if files.certificate_authorities.is_empty() {
                return Err(TlsError::Rejected(
                    "client certificates are asked for but no certificate authority is configured to verify them (tls.certificate_authorities)".to_string(),
                ));
            }
            let roots = Arc::new(root_store(&files.certificate_authorities)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if asked == ClientAuthentication::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|error| TlsError::Rejected(format!("client certificates: {error}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|error| {
        TlsError::Rejected(format!(
            "the certificate [{}] and the key [{}] cannot be used together: {error}",
            files.certificate.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side of connections to remote clusters: their certificates must chain to one of
/// `certificate_authorities`; `identity` (certificate chain and key files) is presented when
/// a leader asks for a client certificate.
pub fn client_config(
    certificate_authorities: &[PathBuf],
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    if certificate_authorities.is_empty() {
        return Err(TlsError::Rejected(
            "no certificate authority is configured to verify remote clusters' certificates (tls.certificate_authorities)".to_string(),
        ));
    }
    let roots = root_store(certificate_authorities)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Rejected(error.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((certificate, key)) => builder
            .with_client_auth_cert(
                read_certificates("certificate", certificate)?,
                read_private_key(key)?,
            )
            .map_err(|error| {
                TlsError::Rejected(format!(
                    "the certificate [{}] and the key [{}] cannot be used together: {error}",
                    certificate.display(),
                    key.display()
                ))
            })?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
