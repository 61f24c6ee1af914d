//! `make bench`: the chat-ops command round trip — `echo hi` through
//! `POST /v1/commands` on a real `plugboard run` (release build) with a real
//! echo executor: HTTP, JSON, resolution, policy, executor call, audit event.
//!
//! - latency: p50/p99 over ≥ 1,000 sequential calls (goal: p50 < 1 ms)
//! - throughput: commands/s with 16 concurrent callers
//!
//! Prints a table; asserts nothing (timing belongs here, not in tests).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use support::{Stats, bin, env_count, stats_header, stats_row};

/// Kills the host when the bench ends, however it ends.
struct Host(std::process::Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    std::os::unix::fs::symlink(bin("plugboard-echo"), plugins.join("plugboard-echo")).expect("link echo");
    let config = dir.path().join("plugboard.yaml");
    // A state dir of its own: the default one may be in use by another host.
    let yaml = format!(
        "plugins_dir: plugins\nstate_dir: {}\nexecutors:\n  - name: echo\n    plugin: echo\n",
        dir.path().join("state").display()
    );
    std::fs::write(&config, yaml).expect("config");

    let mut child = Command::new(bin("plugboard"))
        .args(["--log-format", "json", "--listen", "127.0.0.1:0", "run", "--config"])
        .arg(&config)
        .env_remove("PLUGBOARD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null()) // audit events: written, not read
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plugboard run");
    let stderr = child.stderr.take().expect("stderr");
    let host = Host(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut addr = None;
    let mut executor_ready = false;
    while addr.is_none() || !executor_ready {
        let line = lines.next().expect("plugboard exited early").expect("stderr line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        match v["fields"]["message"].as_str() {
            Some("http listening") => addr = v["fields"]["addr"].as_str().map(str::to_owned),
            Some("executor started") => executor_ready = true,
            _ => {}
        }
    }
    // Keep draining stderr so the host never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let url = format!("http://{}/v1/commands", addr.expect("address"));
    let calls = env_count("BENCH_COMMANDS", 2_000).max(1_000);
    let concurrent_calls = env_count("BENCH_CONCURRENT_COMMANDS", 20_000);
    let callers = 16;

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (latencies, throughput) = rt.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(callers).build().expect("client");
        let body = serde_json::json!({ "command": "echo hi", "user": "bench", "channel": "bench" });
        let call = |client: reqwest::Client, body: serde_json::Value, url: String| async move {
            let response = client.post(&url).json(&body).send().await.expect("POST /v1/commands");
            assert!(response.status().is_success(), "status {}", response.status());
            let reply: serde_json::Value = response.json().await.expect("JSON reply");
            assert_eq!(reply["output"], "hi\n");
        };
        for _ in 0..200 {
            call(client.clone(), body.clone(), url.clone()).await;
        }
        let mut latencies = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            call(client.clone(), body.clone(), url.clone()).await;
            latencies.push(t.elapsed());
        }
        let per_caller = concurrent_calls / callers;
        let t = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (client, body, url) = (client.clone(), body.clone(), url.clone());
                tokio::spawn(async move {
                    for _ in 0..per_caller {
                        call(client.clone(), body.clone(), url.clone()).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("caller");
        }
        let elapsed = t.elapsed();
        (latencies, (per_caller * callers) as f64 / elapsed.as_secs_f64())
    });
    drop(host);

    println!();
    println!(
        "plugboard command benchmark: `echo hi` through POST /v1/commands ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    stats_header(34);
    stats_row(34, "command round trip (HTTP, echo)", &Stats::of(latencies), "< 1 ms");
    println!();
    println!("throughput with {callers} concurrent callers: {throughput:.0} commands/s");
}
