//! Soak: plugin processes killed with SIGKILL every few hundred milliseconds
//! while a cursor-resuming `range` source streams into a file sink and a
//! client runs commands without pause. Zero events lost (every index, by
//! id), every command answered (a result or a clear error, never a hang),
//! host memory and descriptors bounded, nothing left behind.
//!
//! `PLUGBOARD_SOAK_SECS` sets how long the kills go on (default 60).

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use plugboard_tests::lifecycle::started_pids;
use plugboard_tests::metrics;
use plugboard_tests::procs::{self, assert_no_zombie_or_orphan};
use plugboard_tests::*;

const LIMIT: u64 = 1_000_000_000;

/// How long the kills go on.
fn soak_duration() -> Duration {
    let secs = std::env::var("PLUGBOARD_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

/// xorshift64: enough randomness to pick victims and pauses, with a seed to print.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[derive(Debug, Default)]
struct CommandFigures {
    ok: u64,
    /// Answered with a clear "not available" error (the executor was down).
    unavailable: u64,
    /// Anything else: a wrong reply, a transport error, a hang past the deadline.
    wrong: Vec<String>,
}

/// Runs `echo soak-N` until `stop`, classifying every answer.
fn command_client(url: String, stop: Arc<AtomicBool>) -> CommandFigures {
    // The executor's timeout is 5 s; an answer later than this is a hang.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut figures = CommandFigures::default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let word = format!("soak-{n}");
        let reply = agent.post(&url).send_json(serde_json::json!({ "command": format!("echo {word}") }));
        let (status, body) = match reply {
            Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
            Err(e) => {
                figures.wrong.push(format!("{word}: no answer: {e}"));
                continue;
            }
        };
        let reply: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        match (status, reply["status"].as_str()) {
            (200, Some("ok")) if reply["output"] == format!("{word}\n").as_str() => figures.ok += 1,
            (503, Some("unavailable"))
                if reply["error"].as_str().is_some_and(|e| e.contains("executor \"echo\" is not available")) =>
            {
                figures.unavailable += 1;
                // As a client would: the error says to try again in a moment.
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => figures.wrong.push(format!("{word}: {status} {body}")),
        }
    }
    figures
}

/// Indexes of the `range` events in the file sink, and how many lines repeat an id.
fn stored_indexes(path: &std::path::Path) -> (BTreeSet<u64>, usize) {
    let events = json_lines(path);
    let numbers: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "dev.plugboard.range").collect();
    let ids: BTreeSet<&str> = numbers.iter().filter_map(|e| e["id"].as_str()).collect();
    let indexes: BTreeSet<u64> = numbers.iter().filter_map(|e| e["data"]["index"].as_u64()).collect();
    (indexes, numbers.len() - ids.len())
}

/// Whether `set` is exactly 0..=max.
fn complete(set: &BTreeSet<u64>) -> bool {
    set.last().is_none_or(|max| set.len() as u64 == max + 1)
}

fn missing(set: &BTreeSet<u64>) -> Vec<u64> {
    let max = set.last().copied().unwrap_or(0);
    (0..=max).filter(|i| !set.contains(i)).take(20).collect()
}

#[test]
fn sigkills_every_few_hundred_ms_lose_no_event_and_leave_no_command_unanswered() {
    let dir = TestDir::new();
    dir.add_plugin("range").add_plugin("echo");
    let sink = dir.path().join("events.jsonl");
    let config = dir.write_config(&format!(
        // Every kill is a failure: no circuit breaker within the soak.
        "restart: {{ initial_backoff: 10ms, max_backoff: 200ms, max_restarts: 1000000 }}\nkill_grace: 500ms\n\
         sources:\n  - {{ name: numbers, plugin: range, config: {{ limit: {LIMIT}, interval: 2ms }} }}\n\
         executors:\n  - {{ name: echo, plugin: echo, timeout: 5s }}\n\
         sinks:\n  - {{ name: out, file: {{ path: {} }} }}\n",
        sink.display()
    ));
    let mut run = run_host(&config);
    let host = run.pid();
    let addr = http_addr(&run.stderr);
    let lines = run.stderr.wait_until("both plugins started", DEADLINE, |l| {
        !started_pids(l, "source", "numbers").is_empty() && !started_pids(l, "executor", "echo").is_empty()
    });
    drop(lines);
    wait_for("the first events in the file sink", DEADLINE, || stored_indexes(&sink).0.len() >= 10);
    let (rss_start, fds_start) = (rss_kib(host).unwrap(), procs::open_fds(host).unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop) = (format!("http://{addr}/v1/commands"), Arc::clone(&stop));
            std::thread::spawn(move || command_client(url, stop))
        })
        .collect();

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut rng = Rng(seed);
    // Kills of a process the host had not yet logged as started hit it mid-launch.
    let (mut killed, mut source_kills, mut executor_kills) = (Vec::new(), 0u64, 0u64);
    let end = Instant::now() + soak_duration();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(150 + rng.next(300)));
        assert!(run.is_running(), "the host died; stderr:\n{}", run.stderr.text());
        let children = procs::live_children(host);
        if children.is_empty() {
            continue;
        }
        let victim = children[rng.next(children.len() as u64) as usize];
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim as i32), Signal::SIGKILL).is_err() {
            continue;
        }
        killed.push(victim);
        let logs = run.stderr.snapshot();
        if started_pids(&logs, "source", "numbers").contains(&victim) {
            source_kills += 1;
        } else if started_pids(&logs, "executor", "echo").contains(&victim) {
            executor_kills += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let figures: Vec<CommandFigures> = clients.into_iter().map(|c| c.join().expect("command client")).collect();

    // Recovery: both instances up again, the stream moving, a command answered.
    let before = stored_indexes(&sink).0.len();
    wait_for("the stream to move on after the kills", DEADLINE, || stored_indexes(&sink).0.len() >= before + 50);
    let reply = chatops::post_command(
        &format!("http://{addr}/v1/commands"),
        serde_json::json!({"command": "echo after the soak"}),
        None,
    );
    assert_eq!((reply.0, reply.1["output"].as_str()), (200, Some("after the soak\n")), "{}", reply.1);
    assert_no_zombie_or_orphan(host, &killed);
    let (rss_end, fds_end) = (rss_kib(host).unwrap(), procs::open_fds(host).unwrap());
    // Every kill the supervisor saw is a restart in /metrics.
    let samples = metrics::scrape(&addr);
    let restarts: f64 = [("numbers", "source"), ("echo", "executor")]
        .iter()
        .filter_map(|(i, k)| {
            metrics::value(&samples, "plugboard_plugin_restarts_total", &[("instance", i), ("kind", k)])
        })
        .sum();

    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(DEADLINE).code(), Some(0), "{}", run.stderr.text());
    let (indexes, repeats) = stored_indexes(&sink);
    let (ok, unavailable): (u64, u64) = figures.iter().fold((0, 0), |(o, u), f| (o + f.ok, u + f.unavailable));
    let wrong: Vec<&String> = figures.iter().flat_map(|f| &f.wrong).collect();
    // Straight to the process's stderr, not `eprintln!`: the test harness
    // captures the macros, and these figures are for every run's log.
    let _ = writeln!(
        std::io::stderr().lock(),
        "soak figures: {:?} of kills (seed {seed}): {} kills ({source_kills} source, {executor_kills} executor, the rest mid-launch), \
         {} events (max index {}, {repeats} repeated lines), commands: {ok} ok, {unavailable} unavailable, {} wrong; {restarts} restarts in /metrics; \
         host rss {rss_start} -> {rss_end} KiB, fds {fds_start} -> {fds_end}",
        soak_duration(),
        killed.len(),
        indexes.len(),
        indexes.last().copied().unwrap_or(0),
        wrong.len()
    );

    assert!(complete(&indexes), "events lost: missing indexes {:?}", missing(&indexes));
    assert!(wrong.is_empty(), "commands without a proper answer: {wrong:#?}");
    assert!(ok > 0, "no command succeeded");
    assert!(source_kills > 0 && executor_kills > 0, "both kinds were killed: {source_kills} / {executor_kills}");
    assert!(
        restarts >= (source_kills + executor_kills) as f64 && restarts <= killed.len() as f64,
        "{restarts} restarts for {} kills ({} of running plugins)",
        killed.len(),
        source_kills + executor_kills
    );
    assert!(fds_end <= fds_start + 64, "host fds grew from {fds_start} to {fds_end}");
    assert!(rss_end < 2 * rss_start + 64 * 1024, "host rss grew from {rss_start} KiB to {rss_end} KiB");
    assert_no_zombie_or_orphan(host, &killed);
}
