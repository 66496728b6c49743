//! # tandem-transport
//!
//! The HTTP transport between clusters: the leader API ([`tandem_recovery::leader_api`]) over
//! HTTP, usable without the `tandem` node (DESIGN.md §5).
//!
//! - [`server`]: the leader side, [`router`]: turns any [`LeaderClient`] (the in-process
//!   leader over a data directory, or a wrapper of it) into an `axum::Router` of internal
//!   endpoints under [`server::PATH_PREFIX`], for the embedder to serve (the node merges it
//!   into its REST router);
//! - [`client`]: [`HttpLeaderClient`], the follower side, a [`LeaderClient`] over a pooled
//!   HTTP client that fails over between the remote cluster's addresses;
//! - [`tls`]: rustls configurations from PEM files, for the node's HTTP port (server) and
//!   for [`HttpLeaderClient`]s of remote clusters (client); [`tls_io`]: the read and write
//!   buffering that makes bulk transfers over TLS cost about what they cost in clear text;
//! - `fuzzing` (with the `fuzzing` feature): the body of the `wire_frame` fuzz target;
//! - [`wire`]: what travels: the leader API's own request types as JSON, JSON answers for
//!   metadata and sessions, a checksummed compressed frame for shard changes, raw (optionally
//!   zstd) bytes with checksum headers for file chunks, and errors as the serialized
//!   [`LeaderError`].
//!
//! Guarantees: the HTTP client passes the same conformance suite as the in-process one
//! (`tandem_recovery::conformance`), so a follower cannot tell them apart but for latency;
//! a leader's error arrives as the same [`LeaderError`] value, classified the same by
//! [`LeaderError::is_retryable`]; connection failures and timeouts are retryable
//! ([`LeaderError::Unavailable`], [`LeaderError::Timeout`]); an answer that arrives damaged is
//! refused as [`LeaderError::CorruptedResponse`] (retryable), never applied and never a panic.
//!
//! [`LeaderClient`]: tandem_recovery::LeaderClient
//! [`LeaderError`]: tandem_recovery::LeaderError
//! [`LeaderError::is_retryable`]: tandem_recovery::LeaderError::is_retryable
//! [`LeaderError::Unavailable`]: tandem_recovery::LeaderError::Unavailable
//! [`LeaderError::Timeout`]: tandem_recovery::LeaderError::Timeout
//! [`LeaderError::CorruptedResponse`]: tandem_recovery::LeaderError::CorruptedResponse

#![warn(missing_docs)]

pub mod client;
mod connector;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod server;
pub mod tls;
pub mod tls_io;
pub mod wire;

pub use client::{HttpLeaderClient, HttpTransportSettings};
pub use server::router;
