//! `make bench`: the costs a plugboard user pays per plugin, measured on the
//! real `echo` and `range` plugins (release build).
//!
//! - start to ready: spawn, handshake, health, Describe (≥ 200 launches),
//!   with AutoMTLS (the default) and without, and with resource limits
//!   (memory, processes, CPU time, open files: cgroups v2 or v1 where
//!   writable, rlimits), interleaved, to show their cost
//! - Execute round trip on one running plugin (≥ 10,000 calls)
//! - source stream throughput (events/s through Source.Stream)
//! - resident memory of one idle plugin
//!
//! Prints a table; asserts nothing (timing belongs here, not in tests).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use plugboard_host::plugin::{self, CommandRequest, StartOptions};

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `make bench` (it builds the release plugins first)", path.display());
    path
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
    n: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    let pick = |q: f64| samples[((n as f64 * q).ceil() as usize).saturating_sub(1).min(n - 1)];
    let mean = samples.iter().sum::<Duration>() / n as u32;
    Stats { p50: pick(0.50), p99: pick(0.99), mean, n }
}

fn row(name: &str, s: &Stats, goal: &str) {
    println!("| {name:<38} | {:>7} | {:>10.1?} | {:>10.1?} | {:>10.1?} | {goal:<12} |", s.n, s.p50, s.p99, s.mean);
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let echo = bin("plugboard-echo");
    let range = bin("plugboard-range");
    let options = StartOptions::default();
    let launches = env_count("BENCH_LAUNCHES", 200);
    let calls = env_count("BENCH_CALLS", 10_000);

    rt.block_on(async {
        // Warm the page cache and the spawner thread.
        for _ in 0..5 {
            plugin::launch("echo", &echo, &options).await.expect("launch echo").shutdown().await;
        }
        let plain = StartOptions {
            security: std::sync::Arc::new(
                [("plugboard-echo".to_owned(), plugin::LaunchSecurity { auto_mtls: false, ..Default::default() })]
                    .into(),
            ),
            ..StartOptions::default()
        };
        let mut limits = plugboard_host::launcher::Limits {
            memory: Some(512 << 20),
            open_files: Some(1024),
            cpu_time: Some(Duration::from_secs(3600)),
            processes: Some(256),
            ..Default::default()
        };
        // processes has no fallback for root without a pids controller.
        if plugboard_host::launcher::limits::check(&limits, nix::unistd::geteuid().as_raw()).is_err() {
            limits.processes = None;
        }
        let isolation = plugin::Isolation { limits, ..Default::default() };
        let limited = StartOptions {
            isolation: std::sync::Arc::new(plugin::IsolationTable {
                instances: [("echo".to_owned(), isolation)].into(),
                ..Default::default()
            }),
            ..StartOptions::default()
        };
        let mut start = Vec::with_capacity(launches);
        let mut start_plain = Vec::with_capacity(launches);
        let mut start_limited = Vec::with_capacity(launches);
        for _ in 0..launches {
            for (options, samples) in
                [(&options, &mut start), (&plain, &mut start_plain), (&limited, &mut start_limited)]
            {
                let t = Instant::now();
                let handle = plugin::launch("echo", &echo, options).await.expect("launch echo");
                samples.push(t.elapsed());
                handle.shutdown().await;
            }
        }
        let enforced = {
            let handle = plugin::launch("echo", &echo, &limited).await.expect("launch echo");
            let how: Vec<String> = handle.process().limits().iter().map(|(what, by)| format!("{what} {by}")).collect();
            handle.shutdown().await;
            how.join(", ")
        };
        let plain_handle = plugin::launch("echo", &echo, &plain).await.expect("launch echo");
        let mut plain_client = plain_handle.executor();

        let handle = plugin::launch("echo", &echo, &options).await.expect("launch echo");
        let mut client = handle.executor();
        let request = CommandRequest {
            instance: "bench".into(),
            config: b"{}".to_vec(),
            command: "echo hi".into(),
            prefix: "echo".into(),
            args: vec!["hi".into()],
            ..Default::default()
        };
        for _ in 0..500 {
            client.execute(request.clone(), Duration::from_secs(10), |_| {}).await.expect("execute");
        }
        let mut round_trips = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            let outcome = client.execute(request.clone(), Duration::from_secs(10), |_| {}).await.expect("execute");
            round_trips.push(t.elapsed());
            assert_eq!(outcome.exit_code, 0);
        }
        let rss = rss_kib(handle.process().pid());
        handle.shutdown().await;
        let mut plain_round_trips = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            plain_client.execute(request.clone(), Duration::from_secs(10), |_| {}).await.expect("execute");
            plain_round_trips.push(t.elapsed());
        }
        plain_handle.shutdown().await;

        // Source stream throughput: range emits `limit` events as fast as it can.
        let limit = env_count("BENCH_EVENTS", 200_000);
        let source = plugin::launch("range", &range, &options).await.expect("launch range");
        let mut client = source.source();
        let t = Instant::now();
        let mut stream = client.stream("bench", &serde_json::json!({ "limit": limit }), None).await.expect("stream");
        let mut received = 0usize;
        while let Some(msg) = stream.message().await.expect("stream message") {
            received += usize::from(msg.event.is_some());
        }
        let elapsed = t.elapsed();
        source.shutdown().await;
        assert_eq!(received, limit);

        println!();
        println!("plugboard plugin benchmark ({} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));
        println!();
        println!(
            "| {:<38} | {:>7} | {:>10} | {:>10} | {:>10} | {:<12} |",
            "measure", "n", "p50", "p99", "mean", "goal (p50)"
        );
        println!("|{:-<40}|{:-<9}|{:-<12}|{:-<12}|{:-<12}|{:-<14}|", "", "", "", "", "", "");
        row("start to ready (echo, AutoMTLS)", &stats(start), "< 3 ms");
        row("start to ready (echo, plaintext)", &stats(start_plain), "< 3 ms");
        row("start to ready (echo, AutoMTLS, limits)", &stats(start_limited), "< 3 ms");
        row("Execute round trip (echo, AutoMTLS)", &stats(round_trips), "< 40 µs");
        row("Execute round trip (echo, plaintext)", &stats(plain_round_trips), "< 40 µs");
        println!();
        println!("limits in the limits case: {enforced}");
        println!(
            "source stream (range): {received} events in {elapsed:.2?} = {:.0} events/s",
            received as f64 / elapsed.as_secs_f64()
        );
        if let Some(kib) = rss {
            println!("resident memory of one echo plugin after the calls: {:.1} MiB", kib as f64 / 1024.0);
        }
    });
}
