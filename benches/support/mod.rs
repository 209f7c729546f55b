//! What the benchmarks share: reading this process's memory, and the database server's CPU
//! time, from /proc.

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

/// The CPU time every PostgreSQL process on this machine has used, in microseconds: user and
/// system time of the live ones, with what the ones that ended (connections closed) left to
/// their parent, the postmaster. Read before and after a phase, it is what the server spent on
/// it, whoever the client. `None` when no `postgres` process is visible (a server elsewhere,
/// or off Linux), so that no figure is printed rather than a wrong one.
// Each bench compiles this module; only the workload bench reads the server's CPU.
#[allow(dead_code)]
pub(crate) fn server_cpu_micros() -> Option<f64> {
    // /proc/<pid>/stat counts in USER_HZ ticks, 100 a second on Linux whatever the kernel's HZ.
    const MICROS_PER_TICK: f64 = 10_000.0;
    let mut ticks = 0u64;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": the name may hold spaces, so split after its ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        seen = true;
        // After the name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        ticks += rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|field| field.parse::<u64>().ok())
            .sum::<u64>();
    }
    seen.then_some(ticks as f64 * MICROS_PER_TICK)
}
