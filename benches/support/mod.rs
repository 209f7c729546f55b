//! What the benchmarks share: reading this process's memory from /proc.

/// A field of /proc/self/status (`VmRSS:`, `VmHWM:`), in KiB; `None` off Linux.
pub(crate) fn proc_status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
