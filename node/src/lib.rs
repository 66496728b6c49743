//! # tandem-node
//!
//! The `tandem` binary's library: one process is one cluster of one node (DESIGN.md §5).
//!
//! - [`config`]: command line and TOML configuration.
//! - [`node`]: the node's parts (indices, leader side, followers, auto-follow) and their
//!   persisted state.
//! - [`rest`]: the Elasticsearch-compatible REST API (axum).
//! - [`error`]: REST errors in Elasticsearch's shape.
//! - [`server`]: binding, serving, graceful shutdown.
//! - [`demo`]: `tandem demo`, the CCR tutorial end to end with two nodes.
//! - [`transport`]: the HTTP transport between clusters (leader endpoints under `/_tandem/`,
//!   and [`transport::HttpLeaderClient`], the follower's client of them).

#![warn(missing_docs)]

pub mod cluster_settings;
pub mod config;
pub mod demo;
pub mod error;
pub mod node;
pub mod rest;
pub mod server;
pub mod transport;
