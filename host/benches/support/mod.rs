//! What the benches share (each includes it with `mod support;`): where the
//! release binaries are, counts from the environment, and latency figures.

// Each bench uses only part of this.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

/// A binary beside the bench's own directory in the target dir (`target/release/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `make bench` (it builds the release binaries first)", path.display());
    path
}

/// `name` from the environment as a count, else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The sample at quantile `q` (0..=1, nearest rank) of `sorted` (not empty).
pub fn pick(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

/// p50, p99 and mean of a set of latencies.
pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
    pub n: usize,
}

impl Stats {
    /// `samples` must not be empty.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let n = samples.len();
        let mean = samples.iter().sum::<Duration>() / n as u32;
        Self { p50: pick(&samples, 0.50), p99: pick(&samples, 0.99), mean, n }
    }
}

/// The header of a latency table (`| measure | n | p50 | p99 | mean | goal (p50) |`).
pub fn stats_header(measure_width: usize) {
    println!(
        "| {:<measure_width$} | {:>7} | {:>10} | {:>10} | {:>10} | {:<12} |",
        "measure", "n", "p50", "p99", "mean", "goal (p50)"
    );
    println!("|{:-<w$}|{:-<9}|{:-<12}|{:-<12}|{:-<12}|{:-<14}|", "", "", "", "", "", "", w = measure_width + 2);
}

/// One row of a latency table.
pub fn stats_row(measure_width: usize, name: &str, s: &Stats, goal: &str) {
    println!(
        "| {name:<measure_width$} | {:>7} | {:>10.1?} | {:>10.1?} | {:>10.1?} | {goal:<12} |",
        s.n, s.p50, s.p99, s.mean
    );
}
