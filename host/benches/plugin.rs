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

mod support;

use std::time::{Duration, Instant};

use plugboard_host::plugin::{self, CommandRequest, StartOptions};

use support::{Stats, bin, env_count, stats_header, stats_row};

fn row(name: &str, samples: Vec<Duration>, goal: &str) {
    stats_row(38, name, &Stats::of(samples), goal);
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
        stats_header(38);
        row("start to ready (echo, AutoMTLS)", start, "< 3 ms");
        row("start to ready (echo, plaintext)", start_plain, "< 3 ms");
        row("start to ready (echo, AutoMTLS, limits)", start_limited, "< 3 ms");
        row("Execute round trip (echo, AutoMTLS)", round_trips, "< 40 µs");
        row("Execute round trip (echo, plaintext)", plain_round_trips, "< 40 µs");
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
