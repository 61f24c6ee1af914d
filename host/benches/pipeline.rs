//! `make bench`: the event pipeline, measured on the real `range` plugin
//! (release build) through the real durable store (SQLite, WAL,
//! synchronous=FULL, in a temporary directory) to a sink:
//!
//! - events/s from the source to a discarding sink and to the `file` sink
//!   (every event stored durably and delivered);
//! - source-to-sink latency p50/p99 (the event's `time`, set by the plugin
//!   when it creates the event, to the moment the sink has it), both at full
//!   speed — where it is mostly queueing behind back-pressure — and at a
//!   steady 1,000 events/s.
//!
//! Prints a table; asserts nothing (timing belongs here, not in tests).

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plugboard_host::plugin::{self, StartOptions};
use plugboard_host::runtime::pipeline::{DropTypes, Pipeline, PipelineSource};
use plugboard_host::runtime::plan::SourcePlan;
use plugboard_host::runtime::routing::Routing;
use plugboard_host::runtime::sinks::config::{DEFAULT_BATCH_SIZE, FileSinkConfig};
use plugboard_host::runtime::sinks::{self, DeliveryError, RetryConfig, Sink, SinkKind, SinkPlan};
use plugboard_host::runtime::sources::{self, SourceWorkload};
use plugboard_host::runtime::store::StoredEvent;
use plugboard_host::runtime::supervisor::{Kind, Supervisor};
use plugboard_proto::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr;
use tokio_util::sync::CancellationToken;

use support::{bin, env_count, pick};

// The allocator the plugboard binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What a measured sink saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    last_at: Option<Instant>,
}

/// Wraps a real sink: after each delivery, records each event's age.
struct Measured {
    inner: Box<dyn Sink>,
    seen: Arc<Mutex<Seen>>,
    done: Arc<tokio::sync::Notify>,
    expected: usize,
}

fn event_age(stored: &StoredEvent, now: chrono::DateTime<chrono::Utc>) -> Duration {
    let Some(Attr::CeTimestamp(ts)) = stored.event.attributes.get("time").and_then(|v| v.attr.as_ref()) else {
        return Duration::ZERO;
    };
    let made = chrono::DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32).unwrap_or(now);
    (now - made).to_std().unwrap_or_default()
}

#[tonic::async_trait]
impl Sink for Measured {
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        self.inner.deliver(events).await?;
        let now = chrono::Utc::now();
        let mut seen = self.seen.lock().unwrap();
        seen.latencies.extend(events.iter().map(|e| event_age(e, now)));
        seen.last_at = Some(Instant::now());
        if seen.latencies.len() >= self.expected {
            self.done.notify_one();
        }
        Ok(())
    }

    async fn close(&mut self) {
        self.inner.close().await;
    }
}

struct Run {
    events: usize,
    elapsed: Duration,
    stored_at: Duration,
    latencies: Vec<Duration>,
    /// CPU time (user + system) of the host process and of the plugin.
    host_cpu: Duration,
    plugin_cpu: Duration,
}

/// CPU time used so far by this process (`RUSAGE_SELF`) or its reaped children.
fn cpu_time(who: i32) -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One run: `range` with `config` → store → `kind`, until the sink has `events`.
async fn run(kind: SinkKind, range: &SourcePlan, events: usize, tag: &str) -> Run {
    let state = tempfile::Builder::new().prefix("pbbench-").tempdir().expect("state dir");
    let plan = SinkPlan {
        name: Arc::from("bench"),
        kind: match kind {
            SinkKind::File(mut f) => {
                f.path = state.path().join("events.jsonl");
                SinkKind::File(f)
            }
            k => k,
        },
        retry: RetryConfig::default(),
        batch_size: DEFAULT_BATCH_SIZE,
    };
    let seen = Arc::new(Mutex::new(Seen { latencies: Vec::with_capacity(events), last_at: None }));
    let done = Arc::new(tokio::sync::Notify::new());
    let sink = Measured {
        inner: sinks::build(&plan, &StartOptions::default(), &Default::default(), &Default::default()),
        seen: Arc::clone(&seen),
        done: Arc::clone(&done),
        expected: events,
    };
    let name: Arc<str> = Arc::from(range.name.as_str());
    let sources = [PipelineSource { name: Arc::clone(&name), drop_types: DropTypes::default(), plugin: None }];
    let pipeline = Pipeline::start(
        &state.path().join("state"),
        &sources,
        vec![(plan, Box::new(sink))],
        Arc::new(Routing::default()),
    )
    .expect("pipeline");
    let mut committed = pipeline.store.committed();
    let shutdown = CancellationToken::new();
    let supervisor = Supervisor::default();
    let queue = pipeline.queue(&name).expect("queue");
    let (host_before, children_before) = (cpu_time(libc::RUSAGE_SELF), cpu_time(libc::RUSAGE_CHILDREN));
    let started = Instant::now();
    let workload = SourceWorkload::new(range.clone(), None, queue, Default::default());
    supervisor.spawn(sources::spec(range, &StartOptions::default()), Box::new(workload), &shutdown).expect("spawn");
    let stored = tokio::spawn(async move {
        let _ = committed.wait_for(|seq| *seq >= events as u64).await;
        started.elapsed()
    });
    done.notified().await;
    let stored_at = stored.await.expect("stored");
    let host_cpu = cpu_time(libc::RUSAGE_SELF) - host_before;
    shutdown.cancel();
    // The plugin has ended its stream; once reaped its CPU time is counted.
    supervisor.join(Kind::Source).await;
    let plugin_cpu = cpu_time(libc::RUSAGE_CHILDREN) - children_before;
    pipeline.stop().await;
    let mut seen = std::mem::take(&mut *seen.lock().unwrap());
    let elapsed = seen.last_at.map(|t| t - started).unwrap_or_default();
    seen.latencies.sort();
    eprintln!("  {tag}: done");
    Run { events: seen.latencies.len(), elapsed, stored_at, latencies: seen.latencies, host_cpu, plugin_cpu }
}

/// The store alone: pre-built events submitted in catcher-sized batches,
/// timed until the last one is committed. Returns (events/s, writer-side CPU µs/event).
async fn store_only(events: usize) -> (f64, f64) {
    use plugboard_host::runtime::store::Store;
    let state = tempfile::Builder::new().prefix("pbbench-").tempdir().expect("state dir");
    let (store, _) = Store::open(state.path()).expect("store");
    let instance: Arc<str> = Arc::from("bench");
    let made: Vec<_> = (0..events)
        .map(|i| {
            let mut e = plugboard_proto::CloudEvent {
                id: format!("bench-{i}"),
                source: "/plugboard/range/bench".into(),
                spec_version: "1.0".into(),
                r#type: "dev.plugboard.range".into(),
                data: Some(plugboard_proto::io::cloudevents::v1::cloud_event::Data::TextData(format!(
                    "{{\"index\":{i}}}"
                ))),
                ..Default::default()
            };
            e.attributes.insert("time".into(), plugboard_proto::event::timestamp_attr(chrono::Utc::now()));
            e.attributes.insert("datacontenttype".into(), plugboard_proto::event::string_attr("application/json"));
            e
        })
        .collect();
    let mut committed = store.committed();
    let cpu_before = cpu_time(libc::RUSAGE_SELF);
    let started = Instant::now();
    let mut made = made.into_iter().peekable();
    while made.peek().is_some() {
        let mut batch = store.batch(2048);
        for e in made.by_ref().take(2048) {
            batch.push(Arc::clone(&instance), e);
        }
        store.submit(batch).await.expect("submit");
    }
    let _ = committed.wait_for(|seq| *seq >= events as u64).await;
    let elapsed = started.elapsed();
    let cpu = cpu_time(libc::RUSAGE_SELF) - cpu_before;
    store.close().await;
    (events as f64 / elapsed.as_secs_f64(), cpu.as_secs_f64() * 1e6 / events as f64)
}

fn row(name: &str, r: &Run) {
    let per_event = |cpu: Duration| cpu.as_secs_f64() * 1e6 / r.events as f64;
    println!(
        "| {name:<28} | {:>7} | {:>10.0} | {:>11.0} | {:>9.1?} | {:>9.1?} | {:>9.2} | {:>10.2} |",
        r.events,
        r.events as f64 / r.stored_at.as_secs_f64(),
        r.events as f64 / r.elapsed.as_secs_f64(),
        pick(&r.latencies, 0.50),
        pick(&r.latencies, 0.99),
        per_event(r.host_cpu),
        per_event(r.plugin_cpu),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let range_path = bin("plugboard-range");
    let events = env_count("BENCH_PIPELINE_EVENTS", 500_000);
    let paced = env_count("BENCH_PIPELINE_PACED", 5_000);
    rt.block_on(async {
        let described = {
            let handle = plugin::launch("range", &range_path, &StartOptions::default()).await.expect("launch range");
            let d = Arc::clone(handle.described());
            handle.shutdown().await;
            d
        };
        let range = |limit: usize, interval: Option<&str>| SourcePlan {
            name: "bench".into(),
            path: range_path.clone(),
            plugin: Arc::clone(&described),
            config: match interval {
                Some(i) => serde_json::json!({ "limit": limit, "interval": i }),
                None => serde_json::json!({ "limit": limit }),
            },
            drop_types: DropTypes::default(),
            http_token: None,
            supervision: Default::default(),
        };
        let file = || SinkKind::File(FileSinkConfig { path: PathBuf::new(), fsync: false });
        eprintln!("pipeline benchmark: {events} events at full speed, {paced} at 1,000/s");
        // Warm-up (page cache, allocator).
        let _ = run(SinkKind::Discard, &range(20_000, None), 20_000, "warm-up").await;
        let (store_rate, store_cpu) = store_only(events).await;
        let discard = run(SinkKind::Discard, &range(events, None), events, "discard").await;
        let to_file = run(file(), &range(events, None), events, "file").await;
        let paced_discard = run(SinkKind::Discard, &range(paced, Some("1ms")), paced, "discard, paced").await;
        let paced_file = run(file(), &range(paced, Some("1ms")), paced, "file, paced").await;

        println!();
        println!(
            "plugboard pipeline benchmark ({} cores): range → durable store (SQLite WAL, synchronous=FULL) → sink",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!();
        println!(
            "| {:<28} | {:>7} | {:>10} | {:>11} | {:>9} | {:>9} | {:>9} | {:>10} |",
            "run", "events", "stored/s", "delivered/s", "p50", "p99", "host µs/ev", "plugin µs/ev"
        );
        println!("|{:-<30}|{:-<9}|{:-<12}|{:-<13}|{:-<11}|{:-<11}|{:-<12}|{:-<13}|", "", "", "", "", "", "", "", "");
        row("full speed → discard", &discard);
        row("full speed → file", &to_file);
        row("paced (1 ms) → discard", &paced_discard);
        row("paced (1 ms) → file", &paced_file);
        println!();
        println!(
            "store alone (pre-built events in batches of 2,048, encode + insert + commit): {store_rate:.0} events/s, {store_cpu:.2} µs CPU/event"
        );
        println!();
        println!("stored/s: source start to the last event committed; delivered/s: to the last event in the sink.");
        println!("p50/p99: event time (set by the plugin) to the sink; at full speed mostly queueing (back-pressure).");
        println!("µs/ev: CPU time (user + system) per event; on 2 idle cores the bound is 2e6 / (host + plugin) events/s.");
        let cpu = |r: &Run| (r.host_cpu + r.plugin_cpu).as_secs_f64() * 1e6 / r.events as f64;
        println!(
            "CPU bound on 2 idle cores: discard {:.0} events/s, file {:.0} events/s (goal: ≥ 100,000 events/s durable)",
            2e6 / cpu(&discard),
            2e6 / cpu(&to_file)
        );
    });
}
