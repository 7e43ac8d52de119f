//! Thin /proc adapter: CPU time and RSS of a process and all its descendants (parsing is pure and tested).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The fields of `/proc/PID/stat` the probe needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks: the process's own CPU and that of its
    /// children it has already reaped (so a short-lived child's CPU is not lost, nor counted twice).
    pub ticks: u64,
}

/// Parses one `/proc/PID/stat` line (the command may contain spaces and parentheses).
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    // rest[0] = state (field 3), rest[1] = ppid (4), rest[11..15] = utime stime cutime cstime (14..17).
    let ppid = rest.get(1)?.parse().ok()?;
    let mut ticks = 0u64;
    for i in 11..15 {
        ticks += rest.get(i)?.parse::<i64>().ok()?.max(0) as u64;
    }
    Some(ProcStat { pid, ppid, ticks })
}

/// Pure: `root` and every process descending from it.
pub fn descendants(root: u32, all: &[ProcStat]) -> BTreeSet<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in all {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut tree = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if tree.insert(pid) {
            todo.extend(children.get(&pid).into_iter().flatten());
        }
    }
    tree
}

/// Parses `VmRSS` (KiB) out of `/proc/PID/status`.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeSample {
    /// CPU of the live tree (own + reaped children).
    pub cpu: Duration,
    /// Sum of the tree's resident set sizes.
    pub rss_kib: u64,
    pub processes: usize,
}

/// Reads every process in /proc and sums the tree under `root`.
pub fn sample(root: u32) -> TreeSample {
    let mut all = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                if let Some(s) = parse_stat(&text) {
                    all.push(s);
                }
            }
        }
    }
    let tree = descendants(root, &all);
    let hz = clock_ticks_per_sec();
    let mut out = TreeSample::default();
    let mut ticks = 0u64;
    for p in all.iter().filter(|p| tree.contains(&p.pid)) {
        ticks += p.ticks;
        out.processes += 1;
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", p.pid)) {
            out.rss_kib += parse_rss_kib(&status).unwrap_or(0);
        }
    }
    out.cpu = Duration::from_secs_f64(ticks as f64 / hz);
    out
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line =
            "4242 (my (odd) cmd) S 4000 4242 4000 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 123 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                pid: 4242,
                ppid: 4000,
                ticks: 13
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_tree_is_the_root_and_all_its_descendants_only() {
        let p = |pid, ppid| ProcStat {
            pid,
            ppid,
            ticks: 0,
        };
        let all = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1), p(13, 10)];
        let t = descendants(10, &all);
        assert_eq!(t.into_iter().collect::<Vec<_>>(), vec![10, 11, 12, 13]);
    }

    #[test]
    fn rss_is_read_from_status() {
        assert_eq!(parse_rss_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn a_busy_child_shows_up_in_its_parents_tree() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sh -c 'while :; do :; done' & wait"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let root = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut s = sample(root);
        while (s.processes < 2 || s.cpu < Duration::from_millis(200))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
            s = sample(root);
        }
        // SAFETY: signals the process group this test just created.
        unsafe { libc::kill(-(root as i32), libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
        assert!(s.processes >= 2, "{s:?}");
        assert!(s.cpu >= Duration::from_millis(200), "{s:?}");
        assert!(s.rss_kib > 0);
    }
}
