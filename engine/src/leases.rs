//! Retention leases: promises to keep the history at and above a sequence number.
//!
//! A follower (or a recovery) holds one lease per leader shard. The shard never lets a merge drop
//! an operation at or above the smallest `retaining_seq_no` of its leases. Leases expire when not
//! renewed for `index.soft_deletes.retention_lease.period` (12h by default), so no history is
//! held forever by a follower that went away.
//!
//! Bounds: a shard holds at most [`MAX_RETENTION_LEASES_PER_SHARD`] leases, with ids of at
//! most [`MAX_RETENTION_LEASE_ID_BYTES`] and sources of at most
//! [`MAX_RETENTION_LEASE_SOURCE_BYTES`]; a lease beyond them is refused (400,
//! `retention_lease_exception`) before anything is written. Elasticsearch has no such limits;
//! without them anyone who can add a lease can make every change, every commit and every
//! recovery of the shard as large as they like.
//!
//! Persistence: each change is appended to the shard's lease log ([`crate::lease_log`]); the
//! leases are also carried in every commit's payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::types::SeqNo;

/// The most retention leases one shard holds. Elasticsearch's own leases are one per shard
/// copy and one per follower index; a thousand leaves room for hundreds of followers.
pub const MAX_RETENTION_LEASES_PER_SHARD: usize = 1_000;
/// The longest lease id, in bytes. A follower lease id holds two index names (up to 255 bytes
/// each), two uuids, the follower's cluster name and the leader's alias: 1 KiB fits the
/// longest one real clusters make.
pub const MAX_RETENTION_LEASE_ID_BYTES: usize = 1_024;
/// The longest lease source (`ccr`, `peer recovery`, ...), in bytes.
pub const MAX_RETENTION_LEASE_SOURCE_BYTES: usize = 256;

/// One retention lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionLease {
    /// Who holds the lease (Elasticsearch's follower lease id format).
    pub id: String,
    /// Operations at or above this sequence number are kept.
    pub retaining_seq_no: SeqNo,
    /// When the lease was added or last renewed, in milliseconds since the Unix epoch.
    pub timestamp_millis: u64,
    /// What kind of holder ("ccr", "peer recovery", ...).
    pub source: String,
    /// When set, the lease expires at this time (milliseconds since the Unix epoch) instead
    /// of one lease period after its last renewal: the lease a promotion adds keeps the
    /// promoted shard's history for a period the promotion chose (see
    /// [`crate::shard::ShardEngine::promote_to_primary`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_millis: Option<u64>,
}

/// The leases of one shard, with a version that grows on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionLeases {
    /// Incremented on every change.
    pub version: u64,
    /// Leases by id.
    pub leases: BTreeMap<String, RetentionLease>,
}

impl RetentionLeases {
    /// Adds a lease. Fails if one with the same id exists.
    pub(crate) fn add(
        &mut self,
        id: &str,
        retaining_seq_no: SeqNo,
        source: &str,
        now_millis: u64,
    ) -> Result<RetentionLease> {
        validate_lease(id, retaining_seq_no)?;
        if source.len() > MAX_RETENTION_LEASE_SOURCE_BYTES {
            return Err(EngineError::RetentionLease(format!(
                "retention lease source of [{}] bytes is longer than the limit of \
                 [{MAX_RETENTION_LEASE_SOURCE_BYTES}] bytes",
                source.len()
            )));
        }
        if self.leases.contains_key(id) {
            return Err(EngineError::RetentionLease(format!(
                "retention lease with ID [{id}] already exists"
            )));
        }
        if self.leases.len() >= MAX_RETENTION_LEASES_PER_SHARD {
            return Err(EngineError::RetentionLease(format!(
                "cannot add retention lease [{id}]: the shard holds [{}] leases, the limit \
                 [{MAX_RETENTION_LEASES_PER_SHARD}]",
                self.leases.len()
            )));
        }
        let lease = RetentionLease {
            id: id.to_string(),
            retaining_seq_no,
            timestamp_millis: now_millis,
            source: source.to_string(),
            expires_at_millis: None,
        };
        self.leases.insert(id.to_string(), lease.clone());
        self.version += 1;
        Ok(lease)
    }

    /// Renews a lease: refreshes its timestamp and raises its retaining sequence number. A
    /// renewal never moves the retaining sequence number backwards (that would promise history
    /// that may already be gone): asking for a lower one is an error.
    pub(crate) fn renew(
        &mut self,
        id: &str,
        retaining_seq_no: SeqNo,
        now_millis: u64,
    ) -> Result<RetentionLease> {
        validate_lease(id, retaining_seq_no)?;
        let Some(lease) = self.leases.get_mut(id) else {
            return Err(EngineError::RetentionLease(format!(
                "retention lease with ID [{id}] not found"
            )));
        };
        if retaining_seq_no < lease.retaining_seq_no {
            return Err(EngineError::RetentionLease(format!(
                "the current retention lease with [{id}] is retaining [{}] which is greater than \
                 the new retaining sequence number [{retaining_seq_no}]",
                lease.retaining_seq_no
            )));
        }
        lease.retaining_seq_no = retaining_seq_no;
        lease.timestamp_millis = now_millis.max(lease.timestamp_millis);
        let renewed = lease.clone();
        self.version += 1;
        Ok(renewed)
    }

    /// Adds the lease `id`, or replaces the one of that id, expiring at `expires_at_millis`
    /// whatever the lease period (see [`RetentionLease::expires_at_millis`]).
    pub(crate) fn put_expiring(
        &mut self,
        id: &str,
        retaining_seq_no: SeqNo,
        source: &str,
        now_millis: u64,
        expires_at_millis: u64,
    ) -> Result<RetentionLease> {
        let replaced = self.leases.remove(id);
        match self.add(id, retaining_seq_no, source, now_millis) {
            Ok(mut lease) => {
                lease.expires_at_millis = Some(expires_at_millis);
                self.leases.insert(id.to_string(), lease.clone());
                Ok(lease)
            }
            Err(error) => {
                if let Some(replaced) = replaced {
                    self.leases.insert(id.to_string(), replaced);
                }
                Err(error)
            }
        }
    }

    /// Removes a lease. Fails if it does not exist.
    pub(crate) fn remove(&mut self, id: &str) -> Result<RetentionLease> {
        let Some(lease) = self.leases.remove(id) else {
            return Err(EngineError::RetentionLease(format!(
                "retention lease with ID [{id}] not found"
            )));
        };
        self.version += 1;
        Ok(lease)
    }

    /// Removes every lease last renewed more than `period_millis` before `now_millis`, and
    /// every lease whose own expiry time passed; returns the removed ones.
    pub(crate) fn expire(&mut self, now_millis: u64, period_millis: u64) -> Vec<RetentionLease> {
        let expired: Vec<String> = self
            .leases
            .values()
            .filter(|lease| match lease.expires_at_millis {
                Some(expires_at) => now_millis > expires_at,
                None => now_millis.saturating_sub(lease.timestamp_millis) > period_millis,
            })
            .map(|lease| lease.id.clone())
            .collect();
        let removed: Vec<RetentionLease> = expired
            .iter()
            .filter_map(|id| self.leases.remove(id))
            .collect();
        if !removed.is_empty() {
            self.version += 1;
        }
        removed
    }

    /// The smallest retaining sequence number, if any lease exists.
    pub fn min_retaining_seq_no(&self) -> Option<SeqNo> {
        self.leases
            .values()
            .map(|lease| lease.retaining_seq_no)
            .min()
    }
}

fn validate_lease(id: &str, retaining_seq_no: SeqNo) -> Result<()> {
    if id.is_empty() {
        return Err(EngineError::RetentionLease(
            "retention lease ID can not be empty".to_string(),
        ));
    }
    if id.len() > MAX_RETENTION_LEASE_ID_BYTES {
        // The id itself is not repeated: it may be megabytes long.
        return Err(EngineError::RetentionLease(format!(
            "retention lease ID of [{}] bytes is longer than the limit of \
             [{MAX_RETENTION_LEASE_ID_BYTES}] bytes",
            id.len()
        )));
    }
    if retaining_seq_no.0 < 0 {
        return Err(EngineError::RetentionLease(format!(
            "retention lease retaining sequence number [{retaining_seq_no}] out of range"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_never_goes_backwards() {
        let mut leases = RetentionLeases::default();
        leases.add("f", SeqNo(10), "ccr", 1).unwrap();
        assert!(leases.renew("f", SeqNo(9), 2).is_err());
        assert_eq!(leases.leases["f"].retaining_seq_no, SeqNo(10));
        leases.renew("f", SeqNo(20), 3).unwrap();
        assert_eq!(leases.min_retaining_seq_no(), Some(SeqNo(20)));
        assert!(
            leases.add("f", SeqNo(0), "ccr", 4).is_err(),
            "duplicate add"
        );
        assert!(leases.renew("missing", SeqNo(0), 4).is_err());
        assert!(leases.remove("missing").is_err());
    }

    #[test]
    fn expired_leases_are_removed() {
        let mut leases = RetentionLeases::default();
        leases.add("old", SeqNo(1), "ccr", 1_000).unwrap();
        leases.add("new", SeqNo(5), "ccr", 50_000).unwrap();
        let removed = leases.expire(60_000, 30_000);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].id, "old");
        assert_eq!(leases.min_retaining_seq_no(), Some(SeqNo(5)));
    }

    #[test]
    fn an_expiring_lease_lives_until_its_own_time() {
        let mut leases = RetentionLeases::default();
        leases.add("ccr", SeqNo(3), "ccr", 1_000).unwrap();
        leases
            .put_expiring("promoted", SeqNo(7), "promotion", 1_000, 500_000)
            .unwrap();
        // Past the period of the ordinary lease, before the promotion lease's own time.
        let removed = leases.expire(100_000, 30_000);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].id, "ccr");
        assert_eq!(leases.min_retaining_seq_no(), Some(SeqNo(7)));
        // A second promotion replaces it, with its new floor and time.
        leases
            .put_expiring("promoted", SeqNo(9), "promotion", 2_000, 900_000)
            .unwrap();
        assert_eq!(leases.leases["promoted"].retaining_seq_no, SeqNo(9));
        assert!(leases.expire(800_000, 30_000).is_empty());
        assert_eq!(leases.expire(900_001, 30_000).len(), 1);
        assert!(leases.leases.is_empty());
    }

    #[test]
    fn ids_sources_and_counts_are_bounded() {
        let mut leases = RetentionLeases::default();
        let long_id = "x".repeat(MAX_RETENTION_LEASE_ID_BYTES + 1);
        let error = leases.add(&long_id, SeqNo(0), "ccr", 1).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(
            error
                .to_string()
                .contains("longer than the limit of [1024] bytes"),
            "{error}"
        );
        assert!(!error.to_string().contains(&long_id));
        assert!(leases.renew(&long_id, SeqNo(0), 1).is_err());
        let long_source = "s".repeat(MAX_RETENTION_LEASE_SOURCE_BYTES + 1);
        assert!(leases.add("a", SeqNo(0), &long_source, 1).is_err());
        leases
            .add(
                &"y".repeat(MAX_RETENTION_LEASE_ID_BYTES),
                SeqNo(0),
                "ccr",
                1,
            )
            .unwrap();
        for n in 1..MAX_RETENTION_LEASES_PER_SHARD {
            leases
                .add(&format!("lease-{n}"), SeqNo(0), "ccr", 1)
                .unwrap();
        }
        let error = leases.add("one-too-many", SeqNo(0), "ccr", 1).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains("the limit [1000]"), "{error}");
        assert_eq!(leases.leases.len(), MAX_RETENTION_LEASES_PER_SHARD);
    }
}
