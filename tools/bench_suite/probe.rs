//! What the suite reads from /proc and the nodes' logs to say what limited
//! a row: the machine's CPU split (/proc/stat), how busy each disk was
//! (/proc/diskstats), each process's CPU time, RSS and data-dir size, and
//! the daemon's `Snapshot taken` lines.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The machine's CPU time by kind (/proc/stat's first line), in ticks:
/// user, nice, system, idle, iowait, irq, softirq.
#[derive(Clone, Copy, Default)]
struct CpuTicks([u64; 7]);

fn read_cpu_ticks() -> Option<CpuTicks> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let mut ticks = [0; 7];
    for slot in &mut ticks {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(CpuTicks(ticks))
}

/// One disk's counters from /proc/diskstats: writes completed, sectors
/// written, milliseconds with I/O in flight.
#[derive(Clone)]
struct DiskCounters {
    name: String,
    writes: u64,
    sectors_written: u64,
    busy_ms: u64,
}

/// Whole disks only (vda, sda, nvme0n1), not partitions, loops or RAM disks.
fn read_disks() -> Vec<DiskCounters> {
    let Ok(text) = std::fs::read_to_string("/proc/diskstats") else {
        return Vec::new();
    };
    text.lines().filter_map(parse_disk_line).collect()
}

fn parse_disk_line(line: &str) -> Option<DiskCounters> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let name = *fields.get(2)?;
    let partition = name.starts_with("nvme") && name.contains('p')
        || !name.starts_with("nvme") && name.ends_with(|c: char| c.is_ascii_digit());
    if partition || name.starts_with("loop") || name.starts_with("ram") {
        return None;
    }
    let number = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(DiskCounters {
        name: name.to_string(),
        writes: number(7)?,
        sectors_written: number(9)?,
        busy_ms: number(12)?,
    })
}

/// A process's user plus system CPU seconds, all threads
/// (/proc/PID/stat fields 14 and 15).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count after it.
    let after_name = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// VmRSS of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Disk space the files under `dir` take (allocated blocks, as `du`
/// counts them: a preallocated segment counts whole).
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => dir_bytes(&entry.path()),
            Ok(metadata) => metadata.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The 1-minute load average (/proc/loadavg), for saying how idle the
/// machine was when a figure was taken.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The counters at the start of a window; `report` gives what happened in it.
pub struct Window {
    started: Instant,
    cpu: Option<CpuTicks>,
    disks: Vec<DiskCounters>,
    processes: Vec<(String, u32, Option<f64>)>,
    load: Option<f64>,
}

impl Window {
    /// `processes`: (name, pid) of each process whose CPU share to report.
    pub fn start(processes: &[(String, u32)]) -> Window {
        Window {
            started: Instant::now(),
            cpu: read_cpu_ticks(),
            disks: read_disks(),
            processes: processes
                .iter()
                .map(|(name, pid)| (name.clone(), *pid, process_cpu_seconds(*pid)))
                .collect(),
            load: load_average(),
        }
    }

    /// One line: the load average at the start, the machine's CPU split,
    /// each disk's busy share and writes, each process's share of one core.
    pub fn report(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        let mut parts = Vec::new();
        if let Some(load) = self.load {
            parts.push(format!("load average {load:.2} at the start"));
        }
        if let (Some(before), Some(after)) = (self.cpu, read_cpu_ticks()) {
            parts.push(cpu_split(before, after));
        }
        for after in read_disks() {
            let Some(before) = self.disks.iter().find(|disk| disk.name == after.name) else {
                continue;
            };
            let busy = after.busy_ms.saturating_sub(before.busy_ms) as f64 / 10.0 / seconds;
            let megabytes =
                after.sectors_written.saturating_sub(before.sectors_written) as f64 * 512.0 / 1e6;
            parts.push(format!(
                "{} busy {busy:.0}% ({} writes, {megabytes:.0} MB written)",
                after.name,
                after.writes.saturating_sub(before.writes)
            ));
        }
        let shares: Vec<String> = self
            .processes
            .iter()
            .filter_map(|(name, pid, before)| {
                let used = process_cpu_seconds(*pid)? - (*before)?;
                Some(format!("{name} {:.0}%", 100.0 * used / seconds))
            })
            .collect();
        if !shares.is_empty() {
            parts.push(format!("CPU of one core: {}", shares.join(", ")));
        }
        format!("{:.1} s: {}", seconds, parts.join("; "))
    }
}

fn cpu_split(before: CpuTicks, after: CpuTicks) -> String {
    let delta: Vec<u64> = (0..7)
        .map(|kind| after.0[kind].saturating_sub(before.0[kind]))
        .collect();
    let total = delta.iter().sum::<u64>().max(1) as f64;
    let share = |kind: usize| 100.0 * delta[kind] as f64 / total;
    format!(
        "machine user {:.0}%, system {:.0}%, softirq {:.0}%, iowait {:.0}%, idle {:.0}%",
        share(0) + share(1),
        share(2) + share(5),
        share(6),
        share(4),
        share(3)
    )
}

/// A log file read from a point on: what a step added to it.
pub struct LogMark {
    path: PathBuf,
    offset: u64,
}

impl LogMark {
    pub fn now(path: PathBuf) -> LogMark {
        let offset = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
        LogMark { path, offset }
    }

    /// The text written since the mark (lossy: logs are ASCII).
    pub fn since(&self) -> String {
        let Ok(bytes) = std::fs::read(&self.path) else {
            return String::new();
        };
        let start = (self.offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// One `Snapshot taken (index=.., term=.., keys=.., bytes=..) in .. ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SnapshotTaken {
    pub keys: u64,
    pub bytes: u64,
    pub ms: u64,
}

pub fn snapshots_taken(log: &str) -> Vec<SnapshotTaken> {
    log.lines().filter_map(parse_snapshot_taken).collect()
}

fn parse_snapshot_taken(line: &str) -> Option<SnapshotTaken> {
    let rest = line.split_once("Snapshot taken (")?.1;
    let (fields, took) = rest.split_once(") in ")?;
    let value = |name: &str| -> Option<u64> {
        fields
            .split(", ")
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(SnapshotTaken {
        keys: value("keys")?,
        bytes: value("bytes")?,
        ms: took.strip_suffix(" ms")?.trim().parse().ok()?,
    })
}

/// "n snapshots taken, each of K keys and B MB, in min-max ms (median m)",
/// or that none was.
pub fn snapshots_line(taken: &[SnapshotTaken]) -> String {
    let Some(last) = taken.last() else {
        return "no snapshot taken".to_string();
    };
    let mut times: Vec<u64> = taken.iter().map(|snapshot| snapshot.ms).collect();
    times.sort_unstable();
    format!(
        "{} snapshots taken, the last of {} keys and {:.1} MB, in {}-{} ms (median {} ms)",
        taken.len(),
        last.keys,
        last.bytes as f64 / 1e6,
        times[0],
        times[times.len() - 1],
        times[times.len() / 2]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lines_are_read_and_others_skipped() {
        let log = "12:00:00.001 [A] Snapshot taken (index=20001, term=2, keys=1000000, bytes=81000030) in 412 ms\n\
                   12:00:00.002 [A] Log compacted below index 10001 (1 segments removed)\n\
                   12:00:01.000 [A] Snapshot taken (index=40001, term=2, keys=1000000, bytes=81000030) in 398 ms\n\
                   12:00:01.000 [A] Snapshot taken (index=x, term=2, keys=y, bytes=1) in 3 ms\n";
        let taken = snapshots_taken(log);
        let first = SnapshotTaken {
            keys: 1_000_000,
            bytes: 81_000_030,
            ms: 412,
        };
        assert_eq!(taken, vec![first, SnapshotTaken { ms: 398, ..first }]);
        assert_eq!(
            snapshots_line(&taken),
            "2 snapshots taken, the last of 1000000 keys and 81.0 MB, in 398-412 ms (median 412 ms)"
        );
        assert_eq!(snapshots_line(&[]), "no snapshot taken");
    }

    #[test]
    fn whole_disks_are_read_and_partitions_left_out() {
        let disk = parse_disk_line(
            " 254       0 vda 837499 25020 25459898 1299780 34551263 888857 328944024 2662952 0 1382768 4857984",
        )
        .expect("a disk");
        assert_eq!(disk.name, "vda");
        assert_eq!(
            (disk.writes, disk.sectors_written, disk.busy_ms),
            (34_551_263, 328_944_024, 1_382_768)
        );
        for partition in ["vda1", "nvme0n1p2", "loop0", "ram1"] {
            let line = format!(" 254 1 {partition} 1 2 3 4 5 6 7 8 9 10 11");
            assert!(parse_disk_line(&line).is_none(), "{partition}");
        }
        assert!(parse_disk_line(" 259 0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11").is_some());
    }

    #[test]
    fn this_process_has_cpu_time_and_rss() {
        let pid = std::process::id();
        assert!(process_cpu_seconds(pid).is_some());
        assert!(rss_bytes(pid).is_some_and(|bytes| bytes > 0));
    }
}
