//! What the benchmarks that spread clients over processes share: their settings from the
//! environment, wall-clock stamps a post carries to its receivers, the open-file limit, a
//! process's memory and CPU time, percentiles of microseconds, and waiting for client processes to connect.

#![allow(
    dead_code,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "each bench uses its part; figures are small and positive"
)]

pub mod http;

use std::time::{SystemTime, UNIX_EPOCH};

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// Raises this process's soft limit of open files to its hard limit (children inherit it).
pub fn raise_open_files() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
            return limit.rlim_cur;
        }
    }
    0
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// The CPU time (user and system) process `pid` has used so far, in milliseconds.
pub fn cpu_ms(pid: u32) -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The command's name, in parentheses, may hold spaces: fields count after it.
            let (_, after_name) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) * 1000.0 / ticks_per_second)
        })
        .unwrap_or(0.0)
}

pub fn percentile(sorted: &[u64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index] as f64 / 1e3
}

/// The stdout of each client process, once every one has printed its `ready` line (all its
/// streams connected), and how long that took.
///
/// # Panics
/// A client without stdout, or whose first line is not `ready`: the bench cannot go on.
pub fn wait_until_ready(
    children: &mut [std::process::Child],
) -> (
    Vec<std::io::BufReader<std::process::ChildStdout>>,
    std::time::Duration,
) {
    use std::io::BufRead as _;
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|child| std::io::BufReader::new(child.stdout.take().expect("stdout")))
        .collect();
    let connecting = std::time::Instant::now();
    for output in &mut outputs {
        let mut line = String::new();
        output.read_line(&mut line).expect("ready line");
        assert!(
            line.starts_with("ready"),
            "a client did not connect: {line:?}"
        );
    }
    (outputs, connecting.elapsed())
}
