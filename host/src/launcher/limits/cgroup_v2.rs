//! Limits in a cgroup v2 directory: `memory.max` (swap off, the whole group
//! killed together on OOM), `pids.max`, `cpu.max`.

use std::fs;
use std::path::Path;

use super::{CPU_PERIOD_US, cpu_quota_us, write_file};

pub fn set_memory(dir: &Path, bytes: u64) -> Result<(), String> {
    set(dir, "memory.max", &bytes.to_string())?;
    // Swap would let the plugin run past its limit instead of dying.
    if dir.join("memory.swap.max").exists() {
        set(dir, "memory.swap.max", "0")?;
    }
    // The plugin and its children go together: no half-dead plugin.
    set(dir, "memory.oom.group", "1")
}

pub fn set_pids(dir: &Path, n: u64) -> Result<(), String> {
    set(dir, "pids.max", &n.to_string())
}

pub fn set_cpu_rate(dir: &Path, rate: f64) -> Result<(), String> {
    set(dir, "cpu.max", &format!("{} {CPU_PERIOD_US}", cpu_quota_us(rate)))
}

/// How many times the kernel's OOM killer killed in the cgroup (`memory.events`).
pub fn oom_kills(dir: &Path) -> u64 {
    let events = fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
    events.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// CPU time used by everything that ran in the cgroup (`cpu.stat` exists
/// without the cpu controller).
pub fn cpu_usage(dir: &Path) -> Option<std::time::Duration> {
    let stat = fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?.trim().parse().ok()?;
    Some(std::time::Duration::from_micros(usec))
}

fn set(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    write_file(&dir.join(file), value).map_err(|e| format!("cannot write {value:?} to {file}: {e}"))
}
