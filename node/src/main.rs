//! The `tandem` binary: `tandem --data DIR --http 127.0.0.1:9200 --name NAME [--config FILE]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tandem_node::config::{ConfigFile, NodeConfig};

/// A Tandem node: an Elasticsearch-compatible cross-cluster replication node.
#[derive(Debug, Parser)]
#[command(name = "tandem", version)]
struct Cli {
    /// Data directory (default `data`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// HTTP address (default 127.0.0.1:9200; port 0 picks a free one).
    #[arg(long)]
    http: Option<String>,
    /// Node and cluster name (default `tandem`).
    #[arg(long)]
    name: Option<String>,
    /// TOML file with `data`, `http` and `name` (command-line flags win).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let file = match cli.config.as_deref().map(ConfigFile::read).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(error) => {
            eprintln!("tandem: {error}");
            return ExitCode::from(2);
        }
    };
    let config = match NodeConfig::resolve(cli.data, cli.http, cli.name, file) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tandem: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tandem: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tandem_node::server::run(
        config,
        tandem_node::server::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tandem: {error}");
            ExitCode::FAILURE
        }
    }
}
