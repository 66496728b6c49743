//! Node configuration: the command line (`tandem --data DIR --http ADDR --name NAME`) and an
//! optional TOML file (`--config FILE`) with the same keys. A flag given on the command line
//! wins over the file; the file wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// The name is empty or has characters that cannot be part of a lease id.
    #[error("invalid node name [{0}]: use letters, digits, '-' and '_'")]
    Name(String),
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
        Ok(NodeConfig { data, http, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_wins_over_file_over_defaults() {
        let file: ConfigFile = toml::from_str("data = \"/d\"\nname = \"file\"").unwrap();
        let config = NodeConfig::resolve(None, None, Some("cli".into()), file).unwrap();
        assert_eq!(config.data, PathBuf::from("/d"));
        assert_eq!(config.name, "cli");
        assert_eq!(config.http.to_string(), DEFAULT_HTTP);
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
