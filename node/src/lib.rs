//! # tandem-node
//!
//! The `tandem` binary's library: one process is one cluster of one node (DESIGN.md §5).
//!
//! - [`config`]: command line and TOML configuration.
//! - [`certs`]: `tandem certs`, a CA and node certificates for the `tls.*` settings.
//! - [`node`]: the node's parts (indices, leader side, followers, auto-follow) and their
//!   persisted state.
//! - [`rest`]: the Elasticsearch-compatible REST API (axum).
//! - [`error`]: REST errors in Elasticsearch's shape.
//! - [`security`]: authentication (users, Basic credentials) when `security.enabled`.
//! - [`indexing_buffer`]: keeps the node's unrefreshed operations within a byte budget.
//! - [`server`]: binding, serving, graceful shutdown.
//! - [`shard_failures`]: reopens indices whose shards failed.
//! - [`demo`]: `tandem demo`, the CCR tutorial end to end with two nodes.
//! - `fuzzing` (with the `fuzzing` feature): the body of the `bulk_body` fuzz target.
//!
//! The HTTP transport between clusters is crate `tandem-transport`: the node serves its
//! leader side under `/_tandem/` (merged into the REST router) and reaches remote clusters
//! through its `HttpLeaderClient`.

#![warn(missing_docs)]

pub mod certs;
pub mod cluster_settings;
pub mod config;
pub mod demo;
pub mod disk_monitor;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod indexing_buffer;
pub mod node;
pub mod rest;
pub mod security;
pub mod server;
pub mod shard_failures;
pub mod system;
pub mod verify_cli;
