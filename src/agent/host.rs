//! Resource figures for heartbeats: system CPU and memory use, and this process's memory.
//!
//! CPU usage is measured between two heartbeats (two samples of the system's CPU counters), so a
//! heartbeat costs two small file reads on Linux and one call on Windows, never a sleep.

use crate::nodes::system::info;

/// Samples kept between heartbeats.
#[derive(Default)]
pub struct HostSampler {
    last_cpu: Option<(u64, u64)>,
}

/// One set of figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostFigures {
    /// System CPU use since the previous sample, percent.
    pub cpu_percent: f64,
    /// System memory in use, percent.
    pub memory_percent: f64,
    /// This process's resident memory, MB.
    pub process_memory_mb: f64,
}

impl HostSampler {
    /// Take a sample.
    pub fn sample(&mut self) -> HostFigures {
        let now = info::cpu_times();
        let cpu_percent = match (self.last_cpu, now) {
            (Some(a), Some(b)) => info::cpu_percent(a, b),
            _ => 0.0,
        };
        self.last_cpu = now.or(self.last_cpu);
        let memory_percent =
            info::memory()
                .filter(|(total, _)| *total > 0)
                .map_or(0.0, |(total, avail)| {
                    ((total.saturating_sub(avail)) as f64 * 1000.0 / total as f64).round() / 10.0
                });
        HostFigures {
            cpu_percent,
            memory_percent,
            process_memory_mb: process_rss_mb(),
        }
    }
}

/// Resident memory of this process in MB (0 where the platform figure is unavailable).
pub fn process_rss_mb() -> f64 {
    #[cfg(target_os = "linux")]
    {
        let pages = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|t| {
                t.split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<u64>().ok())
            });
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        pages.map_or(0.0, |p| {
            ((p * page) as f64 / 1_048_576.0 * 10.0).round() / 10.0
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        0.0
    }
}
