//! What the node reads of its process and of the machine for `_nodes/stats`, `_cluster/stats`,
//! `_cat/nodes` and the Prometheus metrics: CPU, memory and file descriptors from `/proc`
//! (Linux), load averages, and the data directory's file system through the storage seam.
//!
//! [`CpuSampler`] turns the cumulative CPU times `/proc` gives into the percentages
//! Elasticsearch reports: the share of CPU used since the previous sample (at least
//! [`MIN_CPU_SAMPLE_INTERVAL`] apart; a closer call reuses the last figure).
//! Anything `/proc` cannot tell (another OS, a restricted container) reads as 0 or -1, as
//! Elasticsearch shows what a probe could not read, never as an error.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Shortest interval over which a CPU percentage is computed.
pub const MIN_CPU_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// Clock ticks per second of `/proc`'s CPU times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// `part` in percent of `whole`, rounded down (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> u64 {
    part.saturating_mul(100).checked_div(whole).unwrap_or(0)
}

/// The process: CPU time, resident and virtual memory, file descriptors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessSample {
    /// CPU time (user + system) since the process started, in milliseconds.
    pub cpu_millis: u64,
    /// Resident set size in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors (-1 when unknown).
    pub open_file_descriptors: i64,
    /// The soft limit of file descriptors (-1 when unknown).
    pub max_file_descriptors: i64,
}

/// The machine: memory and load.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OsSample {
    /// Physical memory in bytes.
    pub mem_total_bytes: u64,
    /// Available memory in bytes (`MemAvailable`).
    pub mem_free_bytes: u64,
    /// Swap in bytes.
    pub swap_total_bytes: u64,
    /// Free swap in bytes.
    pub swap_free_bytes: u64,
    /// Load averages over 1, 5 and 15 minutes.
    pub load_average: [f64; 3],
    /// Logical CPUs.
    pub cpus: usize,
}

/// Reads the process's figures from `/proc/self`.
pub fn process() -> ProcessSample {
    let mut sample = ProcessSample {
        open_file_descriptors: -1,
        max_file_descriptors: -1,
        ..ProcessSample::default()
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command (which may hold spaces) start after its closing ')'.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line: 12 and 13 after the ')'.
            let ticks = |at: usize| fields.get(at).and_then(|v| v.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
                sample.cpu_millis = (user + system) * 1000 / clock_ticks();
            }
            if let Some(virtual_bytes) = ticks(20) {
                sample.virtual_bytes = virtual_bytes;
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kib) = status_kib(&status, "VmRSS:") {
            sample.resident_bytes = kib * 1024;
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        sample.open_file_descriptors = entries.count() as i64;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the limit into a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        sample.max_file_descriptors = i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX);
    }
    sample
}

fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Reads the machine's figures from `/proc`.
pub fn os() -> OsSample {
    let mut sample = OsSample {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..OsSample::default()
    };
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        let kib = |key| status_kib(&meminfo, key).unwrap_or(0) * 1024;
        sample.mem_total_bytes = kib("MemTotal:");
        sample.mem_free_bytes = kib("MemAvailable:");
        sample.swap_total_bytes = kib("SwapTotal:");
        sample.swap_free_bytes = kib("SwapFree:");
    }
    if let Ok(loadavg) = std::fs::read_to_string("/proc/loadavg") {
        for (slot, value) in sample
            .load_average
            .iter_mut()
            .zip(loadavg.split_whitespace())
        {
            *slot = value.parse().unwrap_or(0.0);
        }
    }
    sample
}

/// The machine's cumulative (busy, total) CPU ticks from `/proc/stat`.
fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle + iowait are not busy.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU percentages of the process and of the machine since the previous sample.
#[derive(Default)]
pub struct CpuSampler {
    last: Mutex<Option<CpuPoint>>,
}

#[derive(Clone, Copy)]
struct CpuPoint {
    at: Instant,
    process_millis: u64,
    machine: Option<(u64, u64)>,
    process_percent: u64,
    machine_percent: u64,
}

impl CpuSampler {
    /// (process, machine) CPU use in percent since the previous sample: the process's share
    /// of all CPUs, as Elasticsearch's `process.cpu.percent`, and the machine's busy share.
    pub fn percents(&self) -> (u64, u64) {
        let now = Instant::now();
        let process_millis = process().cpu_millis;
        let machine = machine_cpu_ticks();
        let mut last = self.last.lock();
        let point = match *last {
            Some(previous) if now.duration_since(previous.at) < MIN_CPU_SAMPLE_INTERVAL => {
                return (previous.process_percent, previous.machine_percent);
            }
            Some(previous) => {
                let wall = now.duration_since(previous.at).as_millis().max(1) as u64;
                let cpus = os().cpus.max(1) as u64;
                let process_percent =
                    (process_millis.saturating_sub(previous.process_millis) * 100 / (wall * cpus))
                        .min(100);
                let machine_percent = match (previous.machine, machine) {
                    (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                        (busy1.saturating_sub(busy0) * 100 / (total1 - total0)).min(100)
                    }
                    _ => previous.machine_percent,
                };
                CpuPoint {
                    at: now,
                    process_millis,
                    machine,
                    process_percent,
                    machine_percent,
                }
            }
            None => CpuPoint {
                at: now,
                process_millis,
                machine,
                process_percent: 0,
                machine_percent: 0,
            },
        };
        *last = Some(point);
        (point.process_percent, point.machine_percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_alive() {
        let process = process();
        assert!(process.resident_bytes > 0, "{process:?}");
        assert!(process.open_file_descriptors > 0, "{process:?}");
        assert!(process.max_file_descriptors >= process.open_file_descriptors);
        let os = os();
        assert!(os.mem_total_bytes >= os.mem_free_bytes && os.mem_total_bytes > 0);
        assert!(os.cpus >= 1);
        let sampler = CpuSampler::default();
        assert_eq!(sampler.percents(), (0, 0), "no interval yet");
        let busy = Instant::now();
        while busy.elapsed() < MIN_CPU_SAMPLE_INTERVAL + Duration::from_millis(50) {
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
        let (process_percent, machine_percent) = sampler.percents();
        assert!(process_percent > 0, "a busy loop uses CPU");
        assert!(machine_percent > 0);
    }
}
