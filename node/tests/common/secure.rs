//! Secure set-ups for tests: certificates made by `tandem certs`, clients that trust them,
//! keystore entries made by `tandem keystore add`, and [`Clusters`], which starts the nodes of
//! a test either as they start by default or as the secure demo runs them (TLS, security, a
//! cross-cluster API key per remote cluster), so that one test body runs both ways.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use super::{EsClient, TandemProcess};

/// The `elastic` password of the nodes [`Clusters`] starts with security on (set through
/// `ELASTIC_PASSWORD` at their first start, so that restarts know it).
pub const ELASTIC_PASSWORD: &str = "tutorial-elastic-password";

/// Runs `tandem certs` for `nodes` into `dir/certs`, as an operator would.
pub fn make_certs(dir: &Path, nodes: &[&str]) -> PathBuf {
    let out = dir.join("certs");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.args(["certs", "--out"]).arg(&out);
    for node in nodes {
        command.args(["--node", node]);
    }
    let output = command.output().expect("run tandem certs");
    assert!(
        output.status.success(),
        "tandem certs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// A client configuration trusting the CA in `certs`, presenting `identity`'s certificate if
/// given.
pub fn trusting(certs: &Path, identity: Option<&str>) -> rustls::ClientConfig {
    let (cert, key) = identity
        .map(|node| {
            (
                certs.join(format!("{node}.crt")),
                certs.join(format!("{node}.key")),
            )
        })
        .unzip();
    tandem_transport::tls::client_config(
        &[certs.join("ca.crt")],
        cert.as_deref().zip(key.as_deref()),
    )
    .expect("client TLS configuration")
}

/// The `--tls-*` arguments of `node`, whose certificate `tandem certs` made in `certs`.
pub fn tls_args(certs: &Path, node: &str) -> Vec<String> {
    let file = |name: String| certs.join(name).display().to_string();
    vec![
        "--tls-cert".into(),
        file(format!("{node}.crt")),
        "--tls-key".into(),
        file(format!("{node}.key")),
        "--tls-ca".into(),
        file("ca.crt".into()),
    ]
}

/// `tandem keystore add name --stdin` on the data directory `data`, with `value`.
pub fn keystore_add(data: &Path, name: &str, value: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["keystore", "add", name, "--stdin", "--data"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tandem keystore");
    writeln!(child.stdin.take().unwrap(), "{value}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// How the nodes of a test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// As a node starts by default: plain HTTP, no authentication.
    Off,
    /// As the secure demo runs them: TLS, security, `elastic` as the client, a cross-cluster
    /// API key for each remote cluster.
    On,
}

/// Starts the nodes of one test in its [`Security`] mode.
pub struct Clusters {
    security: Security,
    /// The CA and the one node certificate every secure node presents (it names localhost
    /// and 127.0.0.1, where every node of a test listens).
    certs: Option<PathBuf>,
}

/// A node of [`Clusters`], and a client of it as `elastic` when security is on.
pub struct Node {
    pub process: TandemProcess,
    client: EsClient,
}

impl Node {
    /// The `host:port` it listens on.
    pub fn address(&self) -> &str {
        self.process.address()
    }

    /// A client of this node (over TLS as `elastic` when security is on).
    pub fn client(&self) -> EsClient {
        self.client.clone()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        self.process.kill9()
    }

    /// SIGTERM, and wait (bounded) for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        self.process.terminate()
    }
}

impl Clusters {
    /// Clusters for a test working in `dir` (certificates, if any, go to `dir/certs`).
    pub fn new(dir: &Path, security: Security) -> Clusters {
        let certs = (security == Security::On).then(|| make_certs(dir, &["node"]));
        Clusters { security, certs }
    }

    /// Starts node `name` on `data`, on a free port.
    pub fn start(&self, name: &str, data: &Path) -> Node {
        self.start_on(name, data, "127.0.0.1:0")
    }

    /// Starts node `name` on `data`, listening on `http` (a restart keeps its port).
    pub fn start_on(&self, name: &str, data: &Path, http: &str) -> Node {
        match &self.certs {
            None => {
                let process = TandemProcess::start_on(name, data, http);
                let client = process.client();
                Node { process, client }
            }
            Some(certs) => {
                let mut args = tls_args(certs, "node");
                args.push("--security".into());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let process = TandemProcess::start_with_env(
                    name,
                    data,
                    http,
                    &args,
                    &[("ELASTIC_PASSWORD", ELASTIC_PASSWORD)],
                );
                let client = EsClient::with_tls(&process.url, trusting(certs, None))
                    .with_basic("elastic", ELASTIC_PASSWORD);
                Node { process, client }
            }
        }
    }

    /// Lets `follower` read `leader` as remote cluster `alias`: with security on, the leader
    /// makes a cross-cluster API key for every index, the follower keeps it in its keystore
    /// and reloads its secure settings, as the secure demo and Elasticsearch 8 do. Nothing
    /// with security off.
    pub async fn grant(&self, follower: &Node, leader: &Node, alias: &str) {
        if self.security == Security::Off {
            return;
        }
        let key = leader
            .client()
            .post(
                "/_security/cross_cluster/api_key",
                json!({"name": format!("{alias}-replication"),
                       "access": {"replication": [{"names": ["*"]}]}}),
            )
            .await;
        assert_eq!(key.status, 200, "{}", key.text);
        let encoded = key.body["encoded"].as_str().expect("an encoded key");
        keystore_add(
            &follower.process.data,
            &format!("cluster.remote.{alias}.credentials"),
            encoded,
        );
        let reloaded = follower
            .client()
            .post_empty("/_nodes/reload_secure_settings")
            .await;
        assert_eq!(reloaded.status, 200, "{}", reloaded.text);
    }
}

/// A node started with `--security` (plain HTTP, on loopback) on `data`, and a client of it
/// as `elastic` with the password it printed.
pub fn start_secured(name: &str, data: &Path) -> (TandemProcess, EsClient) {
    let node = TandemProcess::start_with(name, data, "127.0.0.1:0", &["--security"]);
    let elastic = node
        .client()
        .with_basic("elastic", &node.elastic_password());
    (node, elastic)
}
