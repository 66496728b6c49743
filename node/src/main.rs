//! The `tandem` binary: `tandem --data DIR --http 127.0.0.1:9200 --name NAME [--config FILE]`
//! runs a node; `tandem demo` runs the CCR tutorial end to end with two nodes; `tandem certs`
//! makes a CA and node certificates for `--tls-cert`, `--tls-key` and `--tls-ca`; `tandem
//! verify` proves a follower index holds what its leader holds.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem_node::config::{ConfigFile, NodeConfig};
use tandem_node::demo::DemoOptions;

/// mimalloc instead of glibc's malloc: in a profile of a followed leader, glibc's
/// `malloc`/`free` took about a fifth of the CPU; mimalloc raised the node's ingest 9%.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Tandem node: an Elasticsearch-compatible cross-cluster replication node.
#[derive(Debug, Parser)]
#[command(name = "tandem", version)]
struct Cli {
    /// Something else than running a node.
    #[command(subcommand)]
    command: Option<Command>,
    /// Data directory (default `data`).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// HTTP address (default 127.0.0.1:9200; port 0 picks a free one).
    #[arg(long)]
    http: Option<String>,
    /// Node and cluster name (default `tandem`).
    #[arg(long)]
    name: Option<String>,
    /// TOML file with `data`, `http`, `name` and the other settings (command-line flags win).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The node's TLS certificate chain (PEM): the HTTP port then speaks TLS only
    /// (`tls.certificate`; make one with `tandem certs`).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM; `tls.key`).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// A CA certificate (PEM) trusted for remote clusters' certificates and for client
    /// certificates; repeat for several (`tls.certificate_authorities`).
    #[arg(long)]
    tls_ca: Vec<PathBuf>,
    /// Whether clients must present a certificate: none, optional or required
    /// (`tls.client_authentication`).
    #[arg(long)]
    tls_client_auth: Option<String>,
    /// Every request must authenticate (`security.enabled`); the first start creates the
    /// `elastic` superuser and prints its password once.
    #[arg(long)]
    security: bool,
    /// Allow a non-loopback `--http` address without TLS and security (logged at every start).
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Two nodes on loopback: follow, replicate under load, fail over and fail back.
    Demo {
        /// Documents indexed before following starts.
        #[arg(long, default_value_t = DemoOptions::default().initial_docs)]
        initial_docs: u64,
        /// Documents indexed while the follower replicates.
        #[arg(long, default_value_t = DemoOptions::default().streamed_docs)]
        streamed_docs: u64,
        /// Rate of the writer while the follower replicates (documents per second).
        #[arg(long, default_value_t = DemoOptions::default().docs_per_second)]
        docs_per_second: u64,
        /// Keep the two data directories here (default: a temporary directory).
        #[arg(long)]
        keep_data: Option<PathBuf>,
    },
    /// Manage the users of the data directory (`--data`), node running or not.
    Users {
        /// What to do.
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Manage the secure settings of the data directory (`--data`): the remote clusters'
    /// credentials, read by the node at start and by `POST /_nodes/reload_secure_settings`.
    Keystore {
        /// What to do.
        #[command(subcommand)]
        action: KeystoreAction,
    },
    /// Verify a follower index against its leader, shard by shard (`POST
    /// /{index}/_ccr/verify` on the follower's node); exit code 0 when equal, 1 when not, 2
    /// when the verify could not run.
    Verify {
        /// The follower node's URL (for example `http://127.0.0.1:9201`).
        #[arg(long = "node")]
        node_url: String,
        /// The follower index.
        #[arg(long)]
        index: String,
        /// Verify at this sequence number (default: each shard's global checkpoint).
        #[arg(long)]
        up_to_seq_no: Option<u64>,
        /// A CA certificate (PEM) to trust for the node's certificate; repeat for several.
        #[arg(long)]
        ca: Vec<PathBuf>,
        /// `NAME:PASSWORD` of a user with `monitor` (or `read_ccr`) and index `monitor`.
        #[arg(long)]
        user: Option<String>,
        /// An encoded API key instead of a user.
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Make a certificate authority (once per directory) and a certificate and key per node,
    /// for `--tls-cert`, `--tls-key` and `--tls-ca`.
    Certs {
        /// Directory of the files (`ca.crt`, `ca.key`, `NODE.crt`, `NODE.key`).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// A node to make a certificate for; repeat for several. The certificate also names
        /// `localhost`, `127.0.0.1` and `::1`.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        /// A DNS name every node certificate holds besides; repeat for several.
        #[arg(long)]
        dns: Vec<String>,
        /// An IP address every node certificate holds besides; repeat for several.
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        /// Days the certificates are valid.
        #[arg(long, default_value_t = tandem_node::certs::DEFAULT_DAYS)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
enum UsersAction {
    /// Add a user.
    Add {
        /// The user name.
        name: String,
        /// The password (read from standard input when not given).
        #[arg(short, long)]
        password: Option<String>,
        /// Comma-separated roles (`superuser` holds every privilege).
        #[arg(short, long, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Change a user's password.
    Passwd {
        /// The user name.
        name: String,
        /// The new password (read from standard input when not given).
        #[arg(short, long)]
        password: Option<String>,
    },
    /// Remove a user.
    Remove {
        /// The user name.
        name: String,
    },
    /// List the users and their roles.
    List,
}

#[derive(Debug, Subcommand)]
enum KeystoreAction {
    /// Set a secure setting (`cluster.remote.<alias>.credentials`: a cross-cluster API key's
    /// `encoded` value), read from standard input.
    Add {
        /// The setting name.
        name: String,
        /// Read the value from standard input without a prompt (it is read from standard
        /// input either way).
        #[arg(long)]
        stdin: bool,
    },
    /// List the setting names (never their values).
    List,
    /// Remove a setting.
    Remove {
        /// The setting name.
        name: String,
    },
}

fn keystore(data: PathBuf, action: KeystoreAction) -> ExitCode {
    use tandem_node::security::keystore::Keystore;
    let result = (|| -> Result<String, String> {
        let keystore = Keystore::open(tandem_engine::storage::real(), &data)
            .map_err(|error| error.to_string())?;
        match action {
            KeystoreAction::Add { name, stdin } => {
                if !stdin {
                    eprint!("value of [{name}]: ");
                }
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|error| format!("cannot read the value: {error}"))?;
                keystore
                    .add(&name, line.trim())
                    .map_err(|error| error.to_string())?;
                Ok(format!(
                    "set [{name}]; a running node reads it at POST /_nodes/reload_secure_settings"
                ))
            }
            KeystoreAction::List => Ok(keystore
                .names()
                .map_err(|error| error.to_string())?
                .join("\n")),
            KeystoreAction::Remove { name } => {
                if keystore.remove(&name).map_err(|error| error.to_string())? {
                    Ok(format!("removed [{name}]"))
                } else {
                    Err(format!("the keystore has no setting [{name}]"))
                }
            }
        }
    })();
    report("keystore", result)
}

/// Prints what a command line tool did (or why it failed, on stderr) and its exit code.
fn report(tool: &str, result: Result<String, String>) -> ExitCode {
    match result {
        Ok(message) => {
            if !message.is_empty() {
                println!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tandem {tool}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The password of `--password`, or a line of standard input.
fn password_argument(given: Option<String>) -> Result<String, String> {
    if let Some(password) = given {
        return Ok(password);
    }
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|error| format!("cannot read the password: {error}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn users(data: PathBuf, action: UsersAction) -> ExitCode {
    use tandem_node::security::{
        secrets, superuser, users::check_username, SecurityError, UserStore,
    };
    let result = (|| -> Result<String, String> {
        let store = UserStore::open(tandem_engine::storage::real(), &data)
            .map_err(|error| error.to_string())?;
        match action {
            UsersAction::Add {
                name,
                password,
                roles,
            } => {
                check_username(&name).map_err(|error| error.to_string())?;
                let password = password_argument(password)?;
                secrets::check_new_password(&password)?;
                let mut user = superuser(&password);
                user.roles = roles;
                store
                    .update(|users| {
                        if users.contains_key(&name) {
                            return Err(SecurityError::Refused(format!(
                                "user [{name}] already exists; change its password with `tandem users passwd {name}`"
                            )));
                        }
                        users.insert(name.clone(), user);
                        Ok(())
                    })
                    .map_err(|error| error.to_string())?;
                Ok(format!("added user [{name}]"))
            }
            UsersAction::Passwd { name, password } => {
                let password = password_argument(password)?;
                secrets::check_new_password(&password)?;
                let hash = secrets::hash_password(&password);
                store
                    .update(|users| match users.get_mut(&name) {
                        Some(user) => {
                            user.password_hash = hash;
                            Ok(())
                        }
                        None => Err(SecurityError::Refused(format!(
                            "user [{name}] does not exist"
                        ))),
                    })
                    .map_err(|error| error.to_string())?;
                Ok(format!("changed the password of [{name}]"))
            }
            UsersAction::Remove { name } => {
                store
                    .update(|users| match users.remove(&name) {
                        Some(_) => Ok(()),
                        None => Err(SecurityError::Refused(format!(
                            "user [{name}] does not exist"
                        ))),
                    })
                    .map_err(|error| error.to_string())?;
                Ok(format!("removed user [{name}]"))
            }
            UsersAction::List => {
                let users = store.all().map_err(|error| error.to_string())?;
                Ok(users
                    .iter()
                    .map(|(name, user)| format!("{name}: {}", user.roles.join(",")))
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
        }
    })();
    report("users", result)
}

fn certs(request: tandem_node::certs::CertsRequest) -> ExitCode {
    match tandem_node::certs::make(&request) {
        Ok(written) => {
            let ca = written.ca_certificate.display();
            if written.ca_created {
                println!(
                    "created the certificate authority {ca} (its key beside it: keep it private)"
                );
            } else {
                println!("signed by the existing certificate authority {ca}");
            }
            for (certificate, key) in &written.nodes {
                println!(
                    "node certificate {}, key {}: start the node with --tls-cert {} --tls-key {} --tls-ca {ca}",
                    certificate.display(),
                    key.display(),
                    certificate.display(),
                    key.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tandem certs: {error}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("tandem: cannot start the runtime: {error}");
            ExitCode::FAILURE
        })
}

fn main() -> ExitCode {
    tandem_transport::tls::install_default_provider();
    let cli = Cli::parse();
    // The demo prints its own story: only warnings from the nodes, unless RUST_LOG says more.
    let default_level = if cli.command.is_some() {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    if matches!(
        cli.command,
        Some(Command::Users { .. } | Command::Keystore { .. })
    ) {
        let file = match cli.config.as_deref().map(ConfigFile::read).transpose() {
            Ok(file) => file.unwrap_or_default(),
            Err(error) => {
                eprintln!("tandem: {error}");
                return ExitCode::from(2);
            }
        };
        let data = cli
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from(tandem_node::config::DEFAULT_DATA));
        return match cli.command {
            Some(Command::Users { action }) => users(data, action),
            Some(Command::Keystore { action }) => keystore(data, action),
            _ => unreachable!("matched above"),
        };
    }
    if let Some(Command::Certs {
        out,
        nodes,
        dns,
        ip,
        days,
    }) = cli.command
    {
        return certs(tandem_node::certs::CertsRequest {
            out,
            nodes,
            dns,
            ips: ip,
            days,
        });
    }
    if let Some(Command::Verify {
        node_url,
        index,
        up_to_seq_no,
        ca,
        user,
        api_key,
    }) = cli.command
    {
        let options = tandem_node::verify_cli::VerifyOptions {
            node: node_url,
            index,
            up_to_seq_no,
            ca,
            user,
            api_key,
        };
        let runtime = match runtime() {
            Ok(runtime) => runtime,
            Err(code) => return code,
        };
        return match runtime.block_on(tandem_node::verify_cli::run(&options)) {
            Ok(outcome) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome.answer)
                        .unwrap_or_else(|_| outcome.answer.to_string())
                );
                if outcome.equal {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(error) => {
                eprintln!("tandem verify: {error}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Demo {
        initial_docs,
        streamed_docs,
        docs_per_second,
        keep_data,
    }) = cli.command
    {
        let options = DemoOptions {
            initial_docs,
            streamed_docs,
            docs_per_second,
            data: keep_data,
            ..DemoOptions::default()
        };
        let runtime = match runtime() {
            Ok(runtime) => runtime,
            Err(code) => return code,
        };
        return match runtime.block_on(tandem_node::demo::run(options)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tandem demo: {error}");
                ExitCode::FAILURE
            }
        };
    }
    // Before the configuration: the default connection cap is half of this limit.
    match tandem_node::http::raise_open_files_limit() {
        Some(limit) if limit < tandem_node::http::RECOMMENDED_OPEN_FILES => tracing::warn!(
            limit,
            recommended = tandem_node::http::RECOMMENDED_OPEN_FILES,
            "the open files limit is low: each shard and each HTTP connection holds descriptors; raise `ulimit -n`"
        ),
        Some(limit) => tracing::debug!(limit, "open files limit"),
        None => tracing::warn!("the open files limit cannot be read"),
    }
    let mut file = match cli.config.as_deref().map(ConfigFile::read).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(error) => {
            eprintln!("tandem: {error}");
            return ExitCode::from(2);
        }
    };
    // TLS flags win over the file's `tls.*` keys.
    file.tls_certificate = cli.tls_cert.or(file.tls_certificate);
    file.tls_key = cli.tls_key.or(file.tls_key);
    if !cli.tls_ca.is_empty() {
        file.tls_certificate_authorities = Some(cli.tls_ca);
    }
    file.tls_client_authentication = cli.tls_client_auth.or(file.tls_client_authentication);
    if cli.security {
        file.security_enabled = Some(true);
    }
    if cli.insecure {
        file.insecure = Some(true);
    }
    let config = match NodeConfig::resolve(cli.data, cli.http, cli.name, file) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tandem: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // The signal handlers are installed inside the runtime, before the node listens.
    match runtime.block_on(async {
        tandem_node::server::run(config, tandem_node::server::shutdown_signal()).await
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tandem: {error}");
            ExitCode::FAILURE
        }
    }
}
