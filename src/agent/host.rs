//! Resource figures for heartbeats: system CPU and memory use, and this process's memory.
//!
//! CPU usage is measured between two heartbeats (two samples of the system's CPU counters), so a
//! heartbeat costs two small file reads on Linux and one call on Windows, never a sleep.

use crate::nodes::system::info;

/// Samples kept between heartbeats.
#[derive(Default)]
pub struct HostSampler {
    last_cpu: Option<(u64, u64)>,
    last_process: Option<(std::time::Instant, f64)>,
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
    /// This process's CPU use since the previous sample, percent of one core.
    pub process_cpu_percent: f64,
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
        let now = std::time::Instant::now();
        let cpu_now = process_cpu_seconds();
        let process_cpu_percent = match (self.last_process, cpu_now) {
            (Some((t, before)), Some(after)) if now > t => {
                let wall = now.duration_since(t).as_secs_f64();
                (((after - before).max(0.0) / wall) * 1000.0).round() / 10.0
            }
            _ => 0.0,
        };
        if let Some(c) = cpu_now {
            self.last_process = Some((now, c));
        }
        HostFigures {
            cpu_percent,
            memory_percent,
            process_memory_mb: process_rss_mb(),
            process_cpu_percent,
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
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::ProcessStatus::{
            K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
        };
        use windows_sys::Win32::System::Threading::GetCurrentProcess;
        // SAFETY: a zeroed, correctly sized counters struct for the current process's pseudo
        // handle (which needs no closing).
        let mut counters: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
        counters.cb = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        let ok =
            unsafe { K32GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, counters.cb) }
                != 0;
        if ok {
            ((counters.WorkingSetSize as f64) / 1_048_576.0 * 10.0).round() / 10.0
        } else {
            0.0
        }
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        0.0
    }
}

/// CPU time (user + system) this process used so far, seconds, where the platform reports it.
pub fn process_cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some(ticks as f64 / hz)
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::FILETIME;
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: the current process's pseudo handle and four valid out pointers.
        let ok = unsafe {
            GetProcessTimes(
                GetCurrentProcess(),
                &mut created,
                &mut exited,
                &mut kernel,
                &mut user,
            )
        } != 0;
        let secs = |t: FILETIME| {
            ((u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)) as f64 / 1e7
        };
        ok.then(|| secs(kernel) + secs(user))
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        None
    }
}

/// System memory `(total, available)` in bytes where the platform reports it.
pub fn system_memory() -> Option<(u64, u64)> {
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
        // SAFETY: a zeroed struct with its length set, as the API requires.
        let mut status: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
        status.dwLength = std::mem::size_of::<MEMORYSTATUSEX>() as u32;
        if unsafe { GlobalMemoryStatusEx(&mut status) } != 0 {
            return Some((status.ullTotalPhys, status.ullAvailPhys));
        }
        None
    }
    #[cfg(not(windows))]
    {
        info::memory()
    }
}
