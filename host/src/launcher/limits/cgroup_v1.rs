//! Limits in cgroup v1 hierarchies (one directory per controller):
//! `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes`, the OOM killer
//! forced on), `pids.max`, `cpu.cfs_quota_us` over `cpu.cfs_period_us`.

use std::fs;
use std::path::Path;

use super::{CPU_PERIOD_US, cpu_quota_us, write_file};

pub fn set_memory(dir: &Path, bytes: u64) -> Result<(), String> {
    set(dir, "memory.limit_in_bytes", &bytes.to_string())?;
    // Memory plus swap, where swap accounting is on: swapping past the limit
    // would let the plugin crawl on instead of dying. It must not be below
    // memory.limit_in_bytes, hence the order.
    if dir.join("memory.memsw.limit_in_bytes").exists() {
        set(dir, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
    }
    // A new v1 memory cgroup inherits oom_kill_disable from its parent; with
    // it set, a plugin at its limit would hang forever instead of dying.
    set(dir, "memory.oom_control", "0")
}

pub fn set_pids(dir: &Path, n: u64) -> Result<(), String> {
    set(dir, "pids.max", &n.to_string())
}

pub fn set_cpu_rate(dir: &Path, rate: f64) -> Result<(), String> {
    // The period first: the quota is checked against it.
    set(dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
    set(dir, "cpu.cfs_quota_us", &cpu_quota_us(rate).to_string())
}

/// Whether the memory cgroup's OOM killer struck: its `oom_kill` count
/// (Linux 4.13+), else `under_oom`, else a failed charge (`memory.failcnt`)
/// together with a SIGKILL, the only way a v1 OOM kill shows on older kernels.
pub fn oom_killed(dir: &Path, sigkill: bool) -> bool {
    let control = fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
    let field = |name: &str| -> Option<u64> {
        control.lines().find_map(|l| l.strip_prefix(name)).and_then(|n| n.trim().parse().ok())
    };
    if let Some(kills) = field("oom_kill ") {
        return kills > 0;
    }
    if field("under_oom ") == Some(1) {
        return true;
    }
    let failcnt = fs::read_to_string(dir.join("memory.failcnt")).ok().and_then(|n| n.trim().parse::<u64>().ok());
    sigkill && failcnt.is_some_and(|n| n > 0)
}

fn set(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    write_file(&dir.join(file), value).map_err(|e| format!("cannot write {value:?} to {file}: {e}"))
}
