//! `tandem verify --node URL --index NAME`: asks a follower node to verify a follower index
//! against its leader (`POST /{index}/_ccr/verify`) and prints the answer, with an exit code
//! a script can test: 0 equal, 1 different, 2 the verify could not run.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Longest the command waits for the node's answer (a verify reads every shard on both sides:
/// about a second per million documents and side).
pub const VERIFY_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// What `tandem verify` was asked.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The follower node's URL (`https://` with `ca`).
    pub node: String,
    /// The follower index.
    pub index: String,
    /// Verify at this seq_no (default: each shard's global checkpoint).
    pub up_to_seq_no: Option<u64>,
    /// CA certificates (PEM) to trust for the node's certificate.
    pub ca: Vec<PathBuf>,
    /// `user:password` for basic authentication.
    pub user: Option<String>,
    /// An encoded API key (`Authorization: ApiKey ...`).
    pub api_key: Option<String>,
}

/// The outcome of a verify that ran.
#[derive(Debug)]
pub struct VerifyOutcome {
    /// True when every shard is equal.
    pub equal: bool,
    /// The node's answer.
    pub answer: Value,
}

/// Runs the verify (see the module documentation); `Err` says why it could not run.
pub async fn run(options: &VerifyOptions) -> Result<VerifyOutcome, String> {
    let mut builder = reqwest::Client::builder().timeout(VERIFY_REQUEST_TIMEOUT);
    if !options.ca.is_empty() || options.node.starts_with("https://") {
        tandem_transport::tls::install_default_provider();
        let tls = tandem_transport::tls::client_config(&options.ca, None)
            .map_err(|error| format!("TLS: {error}"))?;
        builder = builder.use_preconfigured_tls(tls);
    }
    let http = builder
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
    let base = options.node.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_string()
    } else {
        format!("http://{base}")
    };
    let mut url = reqwest::Url::parse(&format!("{base}/"))
        .map_err(|error| format!("invalid node URL [{}]: {error}", options.node))?;
    url.path_segments_mut()
        .map_err(|_| format!("invalid node URL [{}]", options.node))?
        .pop_if_empty()
        .extend([options.index.as_str(), "_ccr", "verify"]);
    if let Some(up_to) = options.up_to_seq_no {
        url.query_pairs_mut()
            .append_pair("up_to_seq_no", &up_to.to_string());
    }
    let mut request = http.post(url);
    if let Some(user) = &options.user {
        let (name, password) = user
            .split_once(':')
            .ok_or_else(|| "--user takes NAME:PASSWORD".to_string())?;
        request = request.basic_auth(name, Some(password));
    }
    if let Some(key) = &options.api_key {
        request = request.header(reqwest::header::AUTHORIZATION, format!("ApiKey {key}"));
    }
    let response = request
        .send()
        .await
        .map_err(|error| format!("cannot reach [{}]: {error}", options.node))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|error| format!("the node's answer is not JSON ({status}): {error}"))?;
    if !status.is_success() {
        let reason = answer
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| answer.to_string());
        return Err(format!("{status}: {reason}"));
    }
    let equal = answer
        .get("equal")
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("the node's answer has no [equal]: {answer}"))?;
    Ok(VerifyOutcome { equal, answer })
}
