//! The resident memory (RSS) of processes, read from `/proc/PID/status` (Linux), and a
//! [`RssSampler`] thread that samples named processes at a fixed interval and keeps each one's
//! peak. A process can be replaced under its name (a restart), its peak carries on.

use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The resident memory of a process, in bytes, as `/proc/PID/status` splits it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resident {
    /// All of it (`VmRSS`).
    pub total: u64,
    /// Anonymous pages (`RssAnon`): the heap, stacks and buffers the process holds.
    pub anon: u64,
    /// File-backed pages (`RssFile`): mapped files (segment files, the binary), page cache the
    /// kernel can take back.
    pub file: u64,
}

/// The resident memory of process `pid` (`VmRSS`, `RssAnon` and `RssFile` of
/// `/proc/PID/status`).
pub fn resident(pid: u32) -> io::Result<Resident> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)?;
    let field = |name: &str| -> io::Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("no {name} in {path}"))
            })?;
        let kilobytes: u64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad {name} line {line:?} in {path}: {error}"),
                )
            })?;
        Ok(kilobytes * 1024)
    };
    Ok(Resident {
        total: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}

/// The resident set size of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn resident_bytes(pid: u32) -> io::Result<u64> {
    resident(pid).map(|resident| resident.total)
}

/// What the sampler saw of one named process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssPeak {
    /// The largest RSS sampled, in bytes.
    pub peak_bytes: u64,
    /// The last RSS sampled, in bytes.
    pub last_bytes: u64,
    /// The largest anonymous part sampled (`RssAnon`), in bytes.
    pub peak_anon_bytes: u64,
    /// The largest file-backed part sampled (`RssFile`), in bytes.
    pub peak_file_bytes: u64,
    /// How many samples were taken (a process that is gone is not sampled).
    pub samples: u64,
}

#[derive(Debug, Default)]
struct Watched {
    pid: Option<u32>,
    seen: RssPeak,
}

type Table = Arc<Mutex<BTreeMap<String, Watched>>>;

/// Samples the RSS of named processes every interval on its own thread until stopped (or
/// dropped).
pub struct RssSampler {
    table: Table,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling every `interval` (nothing is watched yet).
    pub fn start(interval: Duration) -> RssSampler {
        let table: Table = Arc::default();
        let (stop, stopped) = mpsc::channel::<()>();
        let sampled = table.clone();
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    sample(&sampled);
                }
            })
            .expect("spawn the RSS sampler thread");
        RssSampler {
            table,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Samples process `pid` under `name` from now on (replacing the process watched under that
    /// name, whose peak carries on), and takes one sample at once.
    pub fn watch(&self, name: &str, pid: u32) {
        lock(&self.table).entry(name.to_string()).or_default().pid = Some(pid);
        sample(&self.table);
    }

    /// Stops sampling `name` (its process is gone or about to be); its peak stays.
    pub fn unwatch(&self, name: &str) {
        if let Some(watched) = lock(&self.table).get_mut(name) {
            watched.pid = None;
        }
    }

    /// What was seen of each name so far.
    pub fn peaks(&self) -> BTreeMap<String, RssPeak> {
        lock(&self.table)
            .iter()
            .map(|(name, watched)| (name.clone(), watched.seen))
            .collect()
    }

    /// Stops the thread and returns what was seen.
    pub fn stop(mut self) -> BTreeMap<String, RssPeak> {
        self.shut_down();
        self.peaks()
    }

    fn shut_down(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn lock(table: &Table) -> std::sync::MutexGuard<'_, BTreeMap<String, Watched>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sample(table: &Table) {
    for watched in lock(table).values_mut() {
        let Some(pid) = watched.pid else { continue };
        // A process that just died has no status file: nothing to sample.
        if let Ok(now) = resident(pid) {
            let seen = &mut watched.seen;
            seen.peak_bytes = seen.peak_bytes.max(now.total);
            seen.peak_anon_bytes = seen.peak_anon_bytes.max(now.anon);
            seen.peak_file_bytes = seen.peak_file_bytes.max(now.file);
            seen.last_bytes = now.total;
            seen.samples += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_memory_of_this_process_is_read_and_sampled() {
        let own = resident_bytes(std::process::id()).expect("own RSS");
        assert!(own > 0);
        let sampler = RssSampler::start(Duration::from_millis(10));
        sampler.watch("self", std::process::id());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sampler.peaks()["self"].samples < 3 {
            assert!(std::time::Instant::now() < deadline, "the sampler stopped");
            std::thread::sleep(Duration::from_millis(5));
        }
        let peaks = sampler.stop();
        assert!(peaks["self"].peak_bytes >= peaks["self"].last_bytes);
        assert!(peaks["self"].peak_bytes > 0);
    }

    #[test]
    fn a_process_that_does_not_exist_has_no_resident_memory() {
        assert!(resident_bytes(u32::MAX).is_err());
    }
}
