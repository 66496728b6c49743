//! Injected I/O errors on the real file system: the `storage::io` failpoint (TiKV's `fail`),
//! which [`RealStorage`](super::RealStorage) evaluates before every call that changes the disk.
//! Built only with the `failpoints` feature; without it [`check`] is an empty inline function.
//!
//! The failpoint's argument says which calls fail and how:
//!
//! ```text
//! return(<ops>[@<path part>][:<errno>])
//! ```
//!
//! - `<ops>`: one or more [`IoOp`] names joined by `|` (`write|set_len`), or `any`;
//! - `@<path part>`: only calls on a path containing this text (`@translog`, `@meta.json`);
//!   `*` in it matches anything (`@/follower/*.tlog`: the translog files under `/follower/`);
//! - `:<errno>`: `EIO` (the default) or `ENOSPC`.
//!
//! So `fail::cfg("storage::io", "return(sync_data|sync_all@translog)")` makes every fsync of
//! the translog fail with `EIO` until the failpoint is removed, and
//! `"return(write@translog:ENOSPC)"` fills the disk under the translog. A call the argument does
//! not match proceeds. A malformed argument fails every call, naming the mistake, so a test
//! with a typo cannot pass by injecting nothing.

use std::io;
use std::path::Path;

/// A kind of storage call that changes the disk (reads are never injected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Opening a file for writing (created, truncated or read-write).
    Create,
    /// [`StorageFile::write_all_at`](super::StorageFile::write_all_at).
    Write,
    /// [`StorageFile::set_len`](super::StorageFile::set_len).
    SetLen,
    /// [`StorageFile::sync_data`](super::StorageFile::sync_data).
    SyncData,
    /// [`StorageFile::sync_all`](super::StorageFile::sync_all).
    SyncAll,
    /// [`Storage::sync_dir`](super::Storage::sync_dir).
    SyncDir,
    /// [`Storage::rename`](super::Storage::rename).
    Rename,
    /// [`Storage::remove_file`](super::Storage::remove_file) and
    /// [`Storage::remove_dir_all`](super::Storage::remove_dir_all).
    Remove,
    /// [`Storage::create_dir`](super::Storage::create_dir).
    CreateDir,
}

impl IoOp {
    /// Every kind, in declaration order.
    pub const ALL: [IoOp; 9] = [
        IoOp::Create,
        IoOp::Write,
        IoOp::SetLen,
        IoOp::SyncData,
        IoOp::SyncAll,
        IoOp::SyncDir,
        IoOp::Rename,
        IoOp::Remove,
        IoOp::CreateDir,
    ];

    /// The name the failpoint argument uses.
    pub fn name(self) -> &'static str {
        match self {
            IoOp::Create => "create",
            IoOp::Write => "write",
            IoOp::SetLen => "set_len",
            IoOp::SyncData => "sync_data",
            IoOp::SyncAll => "sync_all",
            IoOp::SyncDir => "sync_dir",
            IoOp::Rename => "rename",
            IoOp::Remove => "remove",
            IoOp::CreateDir => "create_dir",
        }
    }

    #[cfg(any(test, feature = "failpoints"))]
    fn from_name(name: &str) -> Option<IoOp> {
        IoOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// Fails the call `op` on `path` when the `storage::io` failpoint says so (see the module
/// documentation).
#[inline]
pub(crate) fn check(op: IoOp, path: &Path) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("storage::io", |argument: Option<String>| {
        injected(argument.as_deref().unwrap_or(""), op, path)
    });
    let _ = (op, path);
    Ok(())
}

/// The error the failpoint `argument` injects into `op` on `path`, if any.
#[cfg(any(test, feature = "failpoints"))]
fn injected(argument: &str, op: IoOp, path: &Path) -> io::Result<()> {
    let rule = match FaultRule::parse(argument) {
        Ok(rule) => rule,
        Err(mistake) => {
            return Err(io::Error::other(format!(
                "storage::io failpoint argument [{argument}]: {mistake}"
            )))
        }
    };
    if rule.matches(op, path) {
        return Err(io::Error::from_raw_os_error(rule.errno.raw_os_error()));
    }
    Ok(())
}

/// A parsed failpoint argument.
#[cfg(any(test, feature = "failpoints"))]
#[derive(Debug, PartialEq)]
struct FaultRule {
    /// `None`: every kind.
    ops: Option<Vec<IoOp>>,
    path_part: Option<String>,
    errno: rustix::io::Errno,
}

#[cfg(any(test, feature = "failpoints"))]
impl FaultRule {
    fn parse(argument: &str) -> Result<FaultRule, String> {
        let (rest, errno) = match argument.rsplit_once(':') {
            Some((rest, "EIO")) => (rest, rustix::io::Errno::IO),
            Some((rest, "ENOSPC")) => (rest, rustix::io::Errno::NOSPC),
            Some((_, other)) => return Err(format!("unknown errno [{other}] (EIO or ENOSPC)")),
            None => (argument, rustix::io::Errno::IO),
        };
        let (ops, path_part) = match rest.split_once('@') {
            Some((ops, part)) if !part.is_empty() => (ops, Some(part.to_string())),
            Some(_) => return Err("empty path part after '@'".into()),
            None => (rest, None),
        };
        let ops = if ops == "any" {
            None
        } else {
            let parsed = ops
                .split('|')
                .map(|name| {
                    IoOp::from_name(name).ok_or_else(|| {
                        format!(
                            "unknown operation [{name}] (one of {}, or any)",
                            IoOp::ALL.map(IoOp::name).join(", ")
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(parsed)
        };
        Ok(FaultRule {
            ops,
            path_part,
            errno,
        })
    }

    fn matches(&self, op: IoOp, path: &Path) -> bool {
        let op_matches = self.ops.as_ref().is_none_or(|ops| ops.contains(&op));
        let path_matches = self.path_part.as_ref().is_none_or(|part| {
            // Each `*`-separated piece, in order.
            let path = path.to_string_lossy();
            let mut rest = &path[..];
            part.split('*').all(|piece| match rest.find(piece) {
                Some(at) => {
                    rest = &rest[at + piece.len()..];
                    true
                }
                None => false,
            })
        });
        op_matches && path_matches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_into_rules() {
        let rule = FaultRule::parse("sync_data|sync_all@translog:ENOSPC").unwrap();
        assert_eq!(rule.ops, Some(vec![IoOp::SyncData, IoOp::SyncAll]));
        assert_eq!(rule.path_part.as_deref(), Some("translog"));
        assert_eq!(rule.errno, rustix::io::Errno::NOSPC);
        let any = FaultRule::parse("any").unwrap();
        assert_eq!(any.ops, None);
        assert_eq!(any.errno, rustix::io::Errno::IO);
        for bad in ["", "writes", "write@", "write:EPERM", "write|"] {
            assert!(FaultRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rule_fails_only_the_calls_it_names() {
        let rule = "rename@meta.json";
        let error = injected(rule, IoOp::Rename, Path::new("/s/index/meta.json")).unwrap_err();
        assert_eq!(
            error.raw_os_error(),
            Some(rustix::io::Errno::IO.raw_os_error())
        );
        injected(rule, IoOp::Rename, Path::new("/s/index/x.managed.json.tmp")).unwrap();
        injected(rule, IoOp::Write, Path::new("/s/index/meta.json")).unwrap();
        let glob = "write@/follower/*.tlog";
        injected(
            glob,
            IoOp::Write,
            Path::new("/t/follower/i/0/translog/translog-2.tlog"),
        )
        .unwrap_err();
        injected(
            glob,
            IoOp::Write,
            Path::new("/t/leader/i/0/translog/translog-2.tlog"),
        )
        .unwrap();
        injected(glob, IoOp::Write, Path::new("/t/follower/i/0/index/a.idx")).unwrap();
        let full = injected("write:ENOSPC", IoOp::Write, Path::new("/a")).unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        // A malformed argument fails every call.
        assert!(injected("wirte", IoOp::Remove, Path::new("/a")).is_err());
    }
}
