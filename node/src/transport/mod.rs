//! The HTTP transport between clusters: how a follower cluster's [`LeaderClient`] reaches a
//! leader cluster (DESIGN.md §5).
//!
//! - [`server`]: the leader side, internal endpoints under `/_tandem/v1/` serving the node's
//!   in-process leader client (`node.leader`); merged into the REST router.
//! - [`client`]: [`HttpLeaderClient`], the follower side, a [`LeaderClient`] over a pooled
//!   HTTP client that fails over between the remote cluster's addresses.
//! - [`wire`]: what travels: JSON requests, JSON answers for metadata and sessions, a
//!   checksummed zstd frame for shard changes, raw (optionally zstd) bytes with checksum
//!   headers for file chunks, and errors as the serialized [`LeaderError`].
//!
//! Guarantees: the HTTP client passes the same conformance suite as the in-process one
//! (`tandem_recovery::conformance`), so a follower cannot tell them apart but for latency;
//! a leader's error arrives as the same [`LeaderError`] value, classified the same by
//! [`LeaderError::is_retryable`]; connection failures and timeouts are retryable
//! ([`LeaderError::Unavailable`], [`LeaderError::Timeout`]); an answer that arrives damaged is
//! refused as [`LeaderError::CorruptedResponse`] (retryable), never applied and never a panic.
//!
//! [`LeaderClient`]: tandem_recovery::client::LeaderClient
//! [`LeaderError`]: tandem_recovery::error::LeaderError
//! [`LeaderError::is_retryable`]: tandem_recovery::error::LeaderError::is_retryable
//! [`LeaderError::Unavailable`]: tandem_recovery::error::LeaderError::Unavailable
//! [`LeaderError::Timeout`]: tandem_recovery::error::LeaderError::Timeout
//! [`LeaderError::CorruptedResponse`]: tandem_recovery::error::LeaderError::CorruptedResponse

pub mod client;
pub mod server;
pub mod wire;

pub use client::{HttpLeaderClient, HttpTransportSettings};
