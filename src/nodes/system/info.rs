//! Facts about the machine for `SystemInfoNode`, without extra crates.
//!
//! Linux: `/proc/stat` (CPU time), `/proc/cpuinfo`, `/proc/meminfo`, `/proc/mounts` + `statvfs`,
//! `/proc/net/dev`, `getifaddrs`, `uname`. Other Unix: `uname`, `statvfs("/")`, `getifaddrs`.
//! Windows: only the APIs of the enabled `windows-sys` features are used: CPU time via
//! `GetSystemTimes`; names from the standard environment variables (`COMPUTERNAME`,
//! `PROCESSOR_ARCHITECTURE`, `PROCESSOR_IDENTIFIER`, as Python's `platform` module reads them).
//! Memory, disk and network figures would need other features, so they are `None` there.

use crate::engine::value::Value;

/// Round like Python's `round(x, digits)` for display figures.
pub(super) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

const GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Operating system facts: `system, release, version, machine, processor, hostname`.
pub(super) struct Os {
    pub system: String,
    pub release: Option<String>,
    pub version: Option<String>,
    pub machine: String,
    pub processor: String,
    pub hostname: Option<String>,
}

#[cfg(unix)]
fn cstr_field(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The OS facts of this machine.
pub(super) fn os() -> Os {
    #[cfg(unix)]
    {
        // SAFETY: `uname` fills a plain struct we own; zeroed is a valid initial value.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid, writable utsname.
        let ok = unsafe { libc::uname(&mut u) } == 0;
        let (system, release, version, machine, host) = if ok {
            (
                cstr_field(&u.sysname),
                Some(cstr_field(&u.release)),
                Some(cstr_field(&u.version)),
                cstr_field(&u.machine),
                Some(cstr_field(&u.nodename)),
            )
        } else {
            (
                std_os_name(),
                None,
                None,
                std::env::consts::ARCH.to_string(),
                None,
            )
        };
        let processor = cpuinfo_field("model name").unwrap_or_else(|| machine.clone());
        Os {
            system,
            release,
            version,
            machine,
            processor,
            hostname: host,
        }
    }
    #[cfg(not(unix))]
    {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let machine =
            env("PROCESSOR_ARCHITECTURE").unwrap_or_else(|| std::env::consts::ARCH.into());
        Os {
            system: std_os_name(),
            release: None,
            version: None,
            processor: env("PROCESSOR_IDENTIFIER").unwrap_or_else(|| machine.clone()),
            machine,
            hostname: env("COMPUTERNAME"),
        }
    }
}

/// Python's `platform.system()` spelling of the compile-time OS.
fn std_os_name() -> String {
    match std::env::consts::OS {
        "linux" => "Linux".into(),
        "windows" => "Windows".into(),
        "macos" => "Darwin".into(),
        "freebsd" => "FreeBSD".into(),
        other => other.to_string(),
    }
}

#[cfg(target_os = "linux")]
fn cpuinfo_field(name: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

#[cfg(all(unix, not(target_os = "linux")))]
fn cpuinfo_field(_name: &str) -> Option<String> {
    None
}

/// Cumulative CPU time `(busy, total)` in ticks, for two-sample usage.
pub(crate) fn cpu_times() -> Option<(u64, u64)> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        parse_proc_stat(&text)
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::FILETIME;
        use windows_sys::Win32::System::Threading::GetSystemTimes;
        let mut idle = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut kernel, mut user) = (idle, idle);
        // SAFETY: three valid, writable FILETIMEs.
        if unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) } == 0 {
            return None;
        }
        let v = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
        // Kernel time includes idle time.
        let total = v(kernel) + v(user);
        Some((total.saturating_sub(v(idle)), total))
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        None
    }
}

/// `(busy, total)` from the aggregate `cpu` line of `/proc/stat` (idle and iowait are not busy).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    if nums.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // counted in user/nice.
    let total: u64 = nums.iter().take(8).sum();
    let idle = nums[3] + nums.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU usage in percent between two samples (one decimal, as psutil).
pub(crate) fn cpu_percent(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    let busy = b.0.saturating_sub(a.0).min(total);
    round(busy as f64 * 100.0 / total as f64, 1)
}

/// `(physical cores, frequency MHz)` where known.
pub(super) fn cpu_details() -> (Option<i64>, Option<f64>) {
    #[cfg(target_os = "linux")]
    {
        let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") else {
            return (None, None);
        };
        parse_cpuinfo(&text)
    }
    #[cfg(not(target_os = "linux"))]
    {
        (None, None)
    }
}

/// Physical cores (distinct `physical id`/`core id` pairs) and the first `cpu MHz`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn parse_cpuinfo(text: &str) -> (Option<i64>, Option<f64>) {
    let mut cores = std::collections::HashSet::new();
    let (mut phys, mut mhz) = (None::<String>, None::<f64>);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "physical id" => phys = Some(v.trim().to_string()),
            "core id" => {
                cores.insert((phys.clone(), v.trim().to_string()));
            }
            "cpu MHz" if mhz.is_none() => mhz = v.trim().parse().ok(),
            _ => {}
        }
    }
    let n = (!cores.is_empty()).then_some(cores.len() as i64);
    (n, mhz)
}

/// Memory: `(total, available)` in bytes.
pub(crate) fn memory() -> Option<(u64, u64)> {
    #[cfg(target_os = "linux")]
    {
        parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// `(MemTotal, MemAvailable)` in bytes (`MemFree + Buffers + Cached` on old kernels).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kb * 1024)
        })
    };
    let total = field("MemTotal")?;
    let avail = field("MemAvailable").or_else(|| {
        Some(field("MemFree")? + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0))
    })?;
    Some((total, avail.min(total)))
}

/// The `ram` section: `total_gb, available_gb, used_gb, percent`.
pub(super) fn ram_section() -> Value {
    match memory() {
        Some((total, avail)) => {
            let used = total - avail;
            let pct = if total == 0 {
                0.0
            } else {
                round(used as f64 * 100.0 / total as f64, 1)
            };
            Value::dict_from([
                ("total_gb", Value::Float(round(total as f64 / GB, 2))),
                ("available_gb", Value::Float(round(avail as f64 / GB, 2))),
                ("used_gb", Value::Float(round(used as f64 / GB, 2))),
                ("percent", Value::Float(pct)),
            ])
        }
        None => Value::dict_from([
            ("total_gb", Value::Null),
            ("available_gb", Value::Null),
            ("used_gb", Value::Null),
            ("percent", Value::Null),
        ]),
    }
}

/// One mounted file system.
pub(super) struct Disk {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

impl Disk {
    /// psutil's percent: used / (used + free available to users).
    pub(super) fn percent(&self) -> f64 {
        let denom = self.used + self.free;
        if denom == 0 {
            0.0
        } else {
            round(self.used as f64 * 100.0 / denom as f64, 1)
        }
    }

    pub(super) fn to_value(&self) -> Value {
        Value::dict_from([
            ("device", Value::str(&self.device)),
            ("mountpoint", Value::str(&self.mountpoint)),
            ("fstype", Value::str(&self.fstype)),
            ("total_gb", Value::Float(round(self.total as f64 / GB, 2))),
            ("used_gb", Value::Float(round(self.used as f64 / GB, 2))),
            ("free_gb", Value::Float(round(self.free as f64 / GB, 2))),
            ("percent", Value::Float(self.percent())),
        ])
    }
}

#[cfg(unix)]
fn statvfs(path: &str) -> Option<(u64, u64, u64)> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `s` a valid, writable struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, bfree, bavail) = (
        s.f_frsize as u64,
        s.f_blocks as u64,
        s.f_bfree as u64,
        s.f_bavail as u64,
    );
    let total = blocks * frsize;
    let used = blocks.saturating_sub(bfree) * frsize;
    Some((total, used, bavail * frsize))
}

/// Mounted disks, the root file system first (its figures are `disk_percent`).
pub(super) fn disks() -> Vec<Disk> {
    #[cfg(unix)]
    {
        let mut mounts: Vec<(String, String, String)> = Vec::new();
        #[cfg(target_os = "linux")]
        if let Ok(text) = std::fs::read_to_string("/proc/mounts") {
            mounts = parse_mounts(&text);
        }
        if !mounts.iter().any(|m| m.1 == "/") {
            mounts.insert(0, ("rootfs".into(), "/".into(), String::new()));
        }
        if let Some(i) = mounts.iter().position(|m| m.1 == "/") {
            let root = mounts.remove(i);
            mounts.insert(0, root);
        }
        let mut out = Vec::new();
        for (device, mountpoint, fstype) in mounts {
            if let Some((total, used, free)) = statvfs(&mountpoint) {
                out.push(Disk {
                    device,
                    mountpoint,
                    fstype,
                    total,
                    used,
                    free,
                });
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        Vec::new()
    }
}

/// Physical-looking mounts from `/proc/mounts` (`/dev/...` devices, like psutil's `all=False`),
/// plus the root file system whatever its device (containers mount `overlay` there). Octal escapes
/// in paths (`\040` for a space) are decoded.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn parse_mounts(text: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(dev), Some(mnt), Some(fs)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let mnt = unescape_octal(mnt);
        if (dev.starts_with("/dev/") || mnt == "/") && !out.iter().any(|m| m.1 == mnt) {
            out.push((unescape_octal(dev), mnt, fs.to_string()));
        }
    }
    out
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Network totals `(bytes_sent, bytes_recv)` summed over interfaces.
pub(super) fn net_io() -> Option<(u64, u64)> {
    #[cfg(target_os = "linux")]
    {
        parse_net_dev(&std::fs::read_to_string("/proc/net/dev").ok()?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Sum of the receive/transmit byte columns of `/proc/net/dev`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    let (mut sent, mut recv, mut any) = (0u64, 0u64, false);
    for line in text.lines().skip(2) {
        let Some((_, rest)) = line.split_once(':') else {
            continue;
        };
        let cols: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect();
        if cols.len() >= 9 {
            recv = recv.saturating_add(cols[0]);
            sent = sent.saturating_add(cols[8]);
            any = true;
        }
    }
    any.then_some((sent, recv))
}

/// Interfaces with their IPv4/IPv6 addresses, as `[{name, addresses: [{family, address}]}]`.
pub(super) fn interfaces() -> Vec<Value> {
    #[cfg(unix)]
    {
        let mut list: Vec<(String, Vec<Value>)> = Vec::new();
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs allocates a list we free below with freeifaddrs.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Vec::new();
        }
        let mut cur = head;
        while !cur.is_null() {
            // SAFETY: `cur` is a node of the list returned by getifaddrs, valid until freeifaddrs.
            let ifa = unsafe { &*cur };
            cur = ifa.ifa_next;
            if ifa.ifa_name.is_null() {
                continue;
            }
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            let addr = if ifa.ifa_addr.is_null() {
                None
            } else {
                // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
                unsafe { sockaddr_text(ifa.ifa_addr) }
            };
            let idx = match list.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    list.push((name, Vec::new()));
                    list.len() - 1
                }
            };
            if let Some((family, text)) = addr {
                list[idx].1.push(Value::dict_from([
                    ("family", Value::str(family)),
                    ("address", Value::str(text)),
                ]));
            }
        }
        // SAFETY: freeing the list getifaddrs gave us, once.
        unsafe { libc::freeifaddrs(head) };
        list.into_iter()
            .map(|(name, addrs)| {
                Value::dict_from([
                    ("name", Value::str(name)),
                    ("addresses", Value::list(addrs)),
                ])
            })
            .collect()
    }
    #[cfg(not(unix))]
    {
        Vec::new()
    }
}

/// # Safety
/// `sa` must point to a valid sockaddr of the size its family implies.
#[cfg(unix)]
unsafe fn sockaddr_text(sa: *const libc::sockaddr) -> Option<(&'static str, String)> {
    match i32::from((*sa).sa_family) {
        libc::AF_INET => {
            let sin = &*(sa as *const libc::sockaddr_in);
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(("AddressFamily.AF_INET", ip.to_string()))
        }
        libc::AF_INET6 => {
            let sin6 = &*(sa as *const libc::sockaddr_in6);
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(("AddressFamily.AF_INET6", ip.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_and_percent() {
        let a = parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(a, (200, 1000));
        let b = parse_proc_stat("cpu  150 0 150 850 50 0 0 0 0 0\n").unwrap();
        assert_eq!(b, (300, 1200));
        assert_eq!(cpu_percent(a, b), 50.0);
        assert_eq!(cpu_percent(a, a), 0.0);
        assert_eq!(parse_proc_stat("intr 1 2\n"), None);
    }

    #[test]
    fn meminfo_and_cpuinfo() {
        let m = "MemTotal:       16000000 kB\nMemFree:  1000 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(
            parse_meminfo(m),
            Some((16_000_000 * 1024, 4_000_000 * 1024))
        );
        let old = "MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 5 kB\nCached: 5 kB\n";
        assert_eq!(parse_meminfo(old), Some((102_400, 20_480)));
        let c = "processor: 0\nphysical id: 0\ncore id: 0\ncpu MHz: 2400.5\nprocessor: 1\nphysical id: 0\ncore id: 0\nprocessor: 2\nphysical id: 0\ncore id: 1\n";
        assert_eq!(parse_cpuinfo(c), (Some(2), Some(2400.5)));
        assert_eq!(parse_cpuinfo("processor: 0\n"), (None, None));
    }

    #[test]
    fn mounts_and_net_dev() {
        let m = "overlay / overlay rw 0 0\nproc /proc proc rw 0 0\n/dev/sda1 /mnt/my\\040disk ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n";
        let parsed = parse_mounts(m);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].1, "/");
        assert_eq!(
            parsed[1],
            ("/dev/sda1".into(), "/mnt/my disk".into(), "ext4".into())
        );
        let d = "Inter-| Receive\n face |bytes packets\n  lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\neth0: 50 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(d), Some((107, 150)));
        let disk = Disk {
            device: "d".into(),
            mountpoint: "/".into(),
            fstype: "x".into(),
            total: 100,
            used: 30,
            free: 60,
        };
        assert_eq!(disk.percent(), 33.3);
    }
}
