//! Node configuration: the command line (`tandem --data DIR --http ADDR --name NAME`) and an
//! optional TOML file (`--config FILE`) with the same keys. A flag given on the command line
//! wins over the file; the file wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use tandem_transport::tls::{ClientAuthentication, TlsFiles};

use crate::http::HttpLimits;

/// Default HTTP address, as Elasticsearch's.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9200";
/// Default node (and cluster) name.
pub const DEFAULT_NAME: &str = "tandem";
/// Default data directory.
pub const DEFAULT_DATA: &str = "data";

/// What a node needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Data directory: cluster state and every index.
    pub data: PathBuf,
    /// Address the HTTP server binds (port 0 picks a free one).
    pub http: SocketAddr,
    /// Node name; also the cluster name.
    pub name: String,
    /// The node's indexing buffer (`indices.memory.index_buffer_size`): the bytes every
    /// shard together may hold for unrefreshed operations before the node refreshes the shards
    /// holding most.
    pub indexing_buffer_bytes: u64,
    /// What bounds the HTTP server's connections.
    pub http_limits: HttpLimits,
    /// TLS on the HTTP port and to remote clusters, when configured.
    pub tls: Option<TlsFiles>,
    /// `security.enabled`: every request must authenticate (see `crate::security`).
    pub security: bool,
    /// `--insecure`: the node may bind a non-loopback address without TLS and security.
    pub insecure: bool,
}

/// Smallest indexing buffer a percentage resolves to (Elasticsearch's
/// `indices.memory.min_index_buffer_size`).
pub const MIN_INDEXING_BUFFER_BYTES: u64 = 48 << 20;
/// Largest indexing buffer the default percentage resolves to: a node's memory beyond its
/// indexing buffer goes to the page cache that serves reads. The buffer covers the tails,
/// the version maps and tantivy's in-memory segments (estimated, see
/// `tandem_engine::shard::indexing_buffer_estimate`); the indexing queues and parked batches
/// are bounded per shard beside it. A one-shard bulk load of 10 M documents stays under 1 GiB
/// (`cargo bench -p tandem-benches --bench bulk_load`; 512 MB, before the writers were counted,
/// peaked at 1.5 GiB).
pub const MAX_DEFAULT_INDEXING_BUFFER_BYTES: u64 = 256 << 20;
/// Physical memory assumed when the system does not say.
const ASSUMED_MEMORY_BYTES: u64 = 4 << 30;

/// The default indexing buffer: 10% of physical memory (Elasticsearch's default is 10% of
/// its heap), at least [`MIN_INDEXING_BUFFER_BYTES`] and at most
/// [`MAX_DEFAULT_INDEXING_BUFFER_BYTES`].
pub fn default_indexing_buffer_bytes() -> u64 {
    (physical_memory_bytes() / 10)
        .clamp(MIN_INDEXING_BUFFER_BYTES, MAX_DEFAULT_INDEXING_BUFFER_BYTES)
}

/// Total physical memory (`MemTotal` of `/proc/meminfo`), or an assumed 4 GiB.
fn physical_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            meminfo.lines().find_map(|line| {
                let kib = line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
                kib.trim().parse::<u64>().ok()?.checked_mul(1024)
            })
        })
        .unwrap_or(ASSUMED_MEMORY_BYTES)
}

/// Parses `indices.memory.index_buffer_size`: a percentage of physical memory (`10%`, at
/// least [`MIN_INDEXING_BUFFER_BYTES`]) or a byte size (`256mb`).
pub fn parse_indexing_buffer(text: &str) -> Result<u64, ConfigError> {
    let invalid = |why: String| ConfigError::IndexBuffer(format!("[{text}]: {why}"));
    match text.trim().strip_suffix('%') {
        Some(percent) => {
            let percent: f64 = percent
                .trim()
                .parse()
                .map_err(|_| invalid("not a percentage".to_string()))?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(invalid("must be above 0% and at most 100%".to_string()));
            }
            let bytes = (physical_memory_bytes() as f64 * percent / 100.0) as u64;
            Ok(bytes.max(MIN_INDEXING_BUFFER_BYTES))
        }
        None => {
            let bytes = tandem_engine::units::ByteSize::parse(text)
                .map_err(invalid)?
                .bytes();
            if bytes == 0 {
                return Err(invalid("must be greater than 0".to_string()));
            }
            Ok(bytes)
        }
    }
}

/// The TOML file: every key optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// HTTP address.
    pub http: Option<String>,
    /// Node name.
    pub name: Option<String>,
    /// `indices.memory.index_buffer_size`: a percentage of physical memory or a byte size.
    pub index_buffer_size: Option<String>,
    /// `http.max_open_connections`: most HTTP connections open at once.
    #[serde(rename = "http.max_open_connections")]
    pub http_max_open_connections: Option<usize>,
    /// `http.max_connections_per_client`: most HTTP connections open at once from one client
    /// IP address.
    #[serde(rename = "http.max_connections_per_client")]
    pub http_max_connections_per_client: Option<usize>,
    /// `http.header_read_timeout`: longest wait for a request head (a time value).
    #[serde(rename = "http.header_read_timeout")]
    pub http_header_read_timeout: Option<String>,
    /// `http.idle_timeout`: longest an HTTP connection stays open unused (a time value).
    #[serde(rename = "http.idle_timeout")]
    pub http_idle_timeout: Option<String>,
    /// `tls.certificate`: the node's certificate chain (PEM); with `tls.key`, the HTTP port
    /// speaks TLS only.
    #[serde(rename = "tls.certificate")]
    pub tls_certificate: Option<PathBuf>,
    /// `tls.key`: the node certificate's private key (PEM).
    #[serde(rename = "tls.key")]
    pub tls_key: Option<PathBuf>,
    /// `tls.certificate_authorities`: CA certificates (PEM) trusted for remote clusters'
    /// certificates and for client certificates.
    #[serde(rename = "tls.certificate_authorities")]
    pub tls_certificate_authorities: Option<Vec<PathBuf>>,
    /// `tls.client_authentication`: `none` (default), `optional` or `required`.
    #[serde(rename = "tls.client_authentication")]
    pub tls_client_authentication: Option<String>,
    /// `security.enabled`: authentication and authorization of every request (default false).
    #[serde(rename = "security.enabled")]
    pub security_enabled: Option<bool>,
    /// `insecure`: allow a non-loopback HTTP address without TLS and security.
    pub insecure: Option<bool>,
}

/// A configuration the node cannot start with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file [{path}]: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config file [{path}]: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The HTTP address is not `host:port`.
    #[error("invalid http address [{0}]: expected ip:port, e.g. 127.0.0.1:9200")]
    HttpAddress(String),
    /// The indexing buffer size is not a percentage or a byte size.
    #[error("invalid index_buffer_size {0}")]
    IndexBuffer(String),
    /// An `http.*` limit is invalid.
    #[error("invalid {0}")]
    HttpLimit(String),
    /// The name is empty or has characters that cannot be part of a lease id.
    #[error("invalid node name [{0}]: use letters, digits, '-' and '_'")]
    Name(String),
    /// The `tls.*` settings are incomplete or invalid.
    #[error("invalid TLS settings: {0}")]
    Tls(String),
    /// A non-loopback address without TLS and security.
    #[error("refusing to bind [{0}] without TLS and security: anyone who reaches it could read and delete every index. Configure TLS (--tls-cert, --tls-key; `tandem certs` makes them) and security (--security), bind a loopback address, or start with --insecure to accept the risk")]
    Insecure(SocketAddr),
}

impl ConfigFile {
    /// Reads and parses a TOML config file.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

impl NodeConfig {
    /// Merges command-line values (`Some` wins) over the file over the defaults.
    pub fn resolve(
        data: Option<PathBuf>,
        http: Option<String>,
        name: Option<String>,
        file: ConfigFile,
    ) -> Result<NodeConfig, ConfigError> {
        let http_limits = http_limits(&file)?;
        let tls = tls_files(&file)?;
        let data = data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
        let http = http
            .or(file.http)
            .unwrap_or_else(|| DEFAULT_HTTP.to_string());
        let http = http
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::HttpAddress(http.clone()))?;
        let name = name
            .or(file.name)
            .unwrap_or_else(|| DEFAULT_NAME.to_string());
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(ConfigError::Name(name));
        }
        let indexing_buffer_bytes = match &file.index_buffer_size {
            Some(size) => parse_indexing_buffer(size)?,
            None => default_indexing_buffer_bytes(),
        };
        let security = file.security_enabled.unwrap_or(false);
        let insecure = file.insecure.unwrap_or(false);
        let protected = tls.is_some() && security;
        if !(http.ip().is_loopback() || protected || insecure) {
            return Err(ConfigError::Insecure(http));
        }
        Ok(NodeConfig {
            data,
            http,
            name,
            indexing_buffer_bytes,
            http_limits,
            tls,
            security,
            insecure,
        })
    }
}

/// The `tls.*` settings of `file`: none, or a certificate and its key (the rest optional).
fn tls_files(file: &ConfigFile) -> Result<Option<TlsFiles>, ConfigError> {
    let client_authentication = match file.tls_client_authentication.as_deref() {
        None => ClientAuthentication::None,
        Some(text) => ClientAuthentication::parse(text).ok_or_else(|| {
            ConfigError::Tls(format!(
                "tls.client_authentication [{text}]: expected none, optional or required"
            ))
        })?,
    };
    let certificate_authorities = file.tls_certificate_authorities.clone().unwrap_or_default();
    match (&file.tls_certificate, &file.tls_key) {
        (Some(certificate), Some(key)) => Ok(Some(TlsFiles {
            certificate: certificate.clone(),
            key: key.clone(),
            certificate_authorities,
            client_authentication,
        })),
        (None, None) => {
            if !certificate_authorities.is_empty()
                || client_authentication != ClientAuthentication::None
            {
                return Err(ConfigError::Tls(
                    "tls.certificate_authorities and tls.client_authentication need tls.certificate and tls.key (--tls-cert, --tls-key)".to_string(),
                ));
            }
            Ok(None)
        }
        (Some(_), None) => Err(ConfigError::Tls(
            "tls.certificate is set but tls.key is not (--tls-key)".to_string(),
        )),
        (None, Some(_)) => Err(ConfigError::Tls(
            "tls.key is set but tls.certificate is not (--tls-cert)".to_string(),
        )),
    }
}

/// The `http.*` limits of `file`, defaults for those it does not set.
fn http_limits(file: &ConfigFile) -> Result<HttpLimits, ConfigError> {
    let mut limits = HttpLimits::default();
    let connections = |key: &str, value: Option<usize>| -> Result<Option<usize>, ConfigError> {
        match value {
            Some(max) if !(1..=crate::http::MAX_OPEN_CONNECTIONS).contains(&max) => {
                Err(ConfigError::HttpLimit(format!(
                    "{key} [{max}]: must be between 1 and {}",
                    crate::http::MAX_OPEN_CONNECTIONS
                )))
            }
            other => Ok(other),
        }
    };
    if let Some(max) = connections("http.max_open_connections", file.http_max_open_connections)? {
        limits.max_open_connections = max;
    }
    let per_client = file.http_max_connections_per_client;
    if let Some(max) = connections("http.max_connections_per_client", per_client)? {
        limits.max_connections_per_client = max;
    }
    let time =
        |key: &str, value: &Option<String>| -> Result<Option<std::time::Duration>, ConfigError> {
            value
                .as_deref()
                .map(|text| match tandem_engine::units::parse_time_millis(text) {
                    Some(millis) if millis > 0 => Ok(std::time::Duration::from_millis(millis)),
                    _ => Err(ConfigError::HttpLimit(format!(
                        "{key} [{text}]: expected a positive time value such as 30s"
                    ))),
                })
                .transpose()
        };
    if let Some(timeout) = time("http.header_read_timeout", &file.http_header_read_timeout)? {
        limits.header_read_timeout = timeout;
    }
    if let Some(timeout) = time("http.idle_timeout", &file.http_idle_timeout)? {
        limits.idle_timeout = timeout;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indexing_buffer_is_a_percentage_or_a_byte_size() {
        assert_eq!(parse_indexing_buffer("256mb").unwrap(), 256 << 20);
        let default = default_indexing_buffer_bytes();
        assert!((MIN_INDEXING_BUFFER_BYTES..=MAX_DEFAULT_INDEXING_BUFFER_BYTES).contains(&default));
        assert!(parse_indexing_buffer("10%").unwrap() >= MIN_INDEXING_BUFFER_BYTES);
        for bad in ["0", "0%", "101%", "ten%", "lots", "-1mb"] {
            assert!(
                matches!(parse_indexing_buffer(bad), Err(ConfigError::IndexBuffer(_))),
                "{bad}"
            );
        }
        let file: ConfigFile = toml::from_str("index_buffer_size = \"64mb\"").unwrap();
        let config = NodeConfig::resolve(None, None, None, file).unwrap();
        assert_eq!(config.indexing_buffer_bytes, 64 << 20);
        let config = NodeConfig::resolve(None, None, None, ConfigFile::default()).unwrap();
        assert_eq!(config.indexing_buffer_bytes, default);
    }

    #[test]
    fn command_line_wins_over_file_over_defaults() {
        let file: ConfigFile = toml::from_str("data = \"/d\"\nname = \"file\"").unwrap();
        let config = NodeConfig::resolve(None, None, Some("cli".into()), file).unwrap();
        assert_eq!(config.data, PathBuf::from("/d"));
        assert_eq!(config.name, "cli");
        assert_eq!(config.http.to_string(), DEFAULT_HTTP);
    }

    #[test]
    fn http_limits_come_from_the_file() {
        let file: ConfigFile = toml::from_str(
            "\"http.max_open_connections\" = 50\n\"http.max_connections_per_client\" = 7\n\"http.header_read_timeout\" = \"2s\"\n\"http.idle_timeout\" = \"1m\"",
        )
        .unwrap();
        let limits = NodeConfig::resolve(None, None, None, file)
            .unwrap()
            .http_limits;
        assert_eq!(limits.max_open_connections, 50);
        assert_eq!(limits.max_connections_per_client, 7);
        assert_eq!(
            limits.header_read_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(limits.idle_timeout, std::time::Duration::from_secs(60));
        let defaults = NodeConfig::resolve(None, None, None, ConfigFile::default()).unwrap();
        assert_eq!(defaults.http_limits, HttpLimits::default());
        for bad in [
            "\"http.max_open_connections\" = 0",
            "\"http.max_connections_per_client\" = 0",
            "\"http.idle_timeout\" = \"soon\"",
            "\"http.header_read_timeout\" = \"0s\"",
        ] {
            let file: ConfigFile = toml::from_str(bad).unwrap();
            let refused = NodeConfig::resolve(None, None, None, file);
            assert!(matches!(refused, Err(ConfigError::HttpLimit(_))), "{bad}");
        }
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        let file: ConfigFile = toml::from_str(
            "\"tls.certificate\" = \"n.crt\"\n\"tls.key\" = \"n.key\"\n\"tls.certificate_authorities\" = [\"ca.crt\"]\n\"tls.client_authentication\" = \"optional\"",
        )
        .unwrap();
        let tls = NodeConfig::resolve(None, None, None, file)
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(tls.certificate, PathBuf::from("n.crt"));
        assert_eq!(tls.key, PathBuf::from("n.key"));
        assert_eq!(tls.certificate_authorities, [PathBuf::from("ca.crt")]);
        assert_eq!(tls.client_authentication, ClientAuthentication::Optional);
        let none = NodeConfig::resolve(None, None, None, ConfigFile::default()).unwrap();
        assert_eq!(none.tls, None);
        for bad in [
            "\"tls.certificate\" = \"n.crt\"",
            "\"tls.key\" = \"n.key\"",
            "\"tls.certificate_authorities\" = [\"ca.crt\"]",
            "\"tls.certificate\" = \"n.crt\"\n\"tls.key\" = \"n.key\"\n\"tls.client_authentication\" = \"maybe\"",
        ] {
            let file: ConfigFile = toml::from_str(bad).unwrap();
            let refused = NodeConfig::resolve(None, None, None, file);
            assert!(matches!(refused, Err(ConfigError::Tls(_))), "{bad}");
        }
    }

    #[test]
    fn a_non_loopback_address_needs_tls_and_security_or_insecure() {
        let file = |text: &str| toml::from_str::<ConfigFile>(text).unwrap();
        let tls = "\"tls.certificate\" = \"n.crt\"\n\"tls.key\" = \"n.key\"\n";
        let open = Some("0.0.0.0:9200".to_string());
        for refused in ["", tls, "\"security.enabled\" = true"] {
            let result = NodeConfig::resolve(None, open.clone(), None, file(refused));
            assert!(matches!(result, Err(ConfigError::Insecure(_))), "{refused}");
        }
        let secure = format!("{tls}\"security.enabled\" = true");
        NodeConfig::resolve(None, open.clone(), None, file(&secure)).unwrap();
        let insecure = NodeConfig::resolve(None, open, None, file("insecure = true")).unwrap();
        assert!(insecure.insecure);
        let loopback = NodeConfig::resolve(None, Some("[::1]:0".into()), None, file("")).unwrap();
        assert!(!loopback.security);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(toml::from_str::<ConfigFile>("colour = 1").is_err());
        let bad_http = NodeConfig::resolve(None, Some("nine".into()), None, ConfigFile::default());
        assert!(matches!(bad_http, Err(ConfigError::HttpAddress(_))));
        let bad_name = NodeConfig::resolve(None, None, Some("a/b".into()), ConfigFile::default());
        assert!(matches!(bad_name, Err(ConfigError::Name(_))));
    }
}
