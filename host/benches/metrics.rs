//! `make bench`: the cost of one `GET /metrics` scrape (encoding only, no
//! HTTP) for a host with 100 source instances, 10 sinks, 100 plugin samples
//! and command metrics for 10 executors. Every pipeline figure is read at
//! scrape time, so this is what observability costs; the event path pays
//! nothing. Prints a table; asserts nothing.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard_host::runtime::metrics::{CommandMetrics, Metrics, PipelineCollector, PluginSample};
use plugboard_host::runtime::pipeline::{DropTypes, Pipeline, PipelineSource};
use plugboard_host::runtime::routing::Routing;
use plugboard_host::runtime::sinks::config::DEFAULT_BATCH_SIZE;
use plugboard_host::runtime::sinks::{self, RetryConfig, SinkKind, SinkPlan};
use plugboard_proto::CloudEvent;

use support::pick;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SOURCES: usize = 100;
const SINKS: usize = 10;
const EXECUTORS: usize = 10;
/// Scrapes timed under `cargo bench`; `cargo test --all-targets` runs a smoke test of a few.
const SCRAPES: usize = 2_000;
const SMOKE_SCRAPES: usize = 20;

fn main() {
    let scrapes = if std::env::args().any(|a| a == "--bench") { SCRAPES } else { SMOKE_SCRAPES };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let state = tempfile::Builder::new().prefix("pbbench-").tempdir().expect("state dir");
        let sources: Vec<PipelineSource> = (0..SOURCES)
            .map(|i| PipelineSource {
                name: Arc::from(format!("source-{i}")),
                drop_types: DropTypes::default(),
                plugin: None,
            })
            .collect();
        let sinks = (0..SINKS)
            .map(|i| {
                let plan = SinkPlan {
                    name: Arc::from(format!("sink-{i}")),
                    kind: SinkKind::Discard,
                    retry: RetryConfig::default(),
                    batch_size: DEFAULT_BATCH_SIZE,
                };
                let sink = sinks::build(&plan, &Default::default(), &Default::default(), &Default::default());
                (plan, sink)
            })
            .collect();
        let pipeline = Pipeline::start(state.path(), &sources, sinks, Arc::new(Routing::default())).expect("pipeline");
        // Ten events per source, so every counter has a value.
        for s in &sources {
            let queue = pipeline.queue(&s.name).expect("queue");
            for n in 0..10 {
                let event = CloudEvent {
                    id: format!("{}-{n}", s.name),
                    source: format!("/bench/{}", s.name),
                    spec_version: "1.0".into(),
                    r#type: "dev.plugboard.bench".into(),
                    ..Default::default()
                };
                queue.send(event, n.to_string()).await.expect("queued");
            }
        }
        let mut committed = pipeline.store.committed();
        let _ = committed.wait_for(|seq| *seq >= (SOURCES * 10) as u64).await;

        let plugins: Vec<PluginSample> = (0..SOURCES)
            .map(|i| PluginSample {
                instance: format!("source-{i}"),
                kind: "source".into(),
                plugin: "range".into(),
                up: true,
                restarts: i as u64 % 3,
                deactivated: false,
                last_exit_code: (i % 2 == 0).then_some(1),
            })
            .collect();
        let commands = Arc::new(CommandMetrics::default());
        for e in 0..EXECUTORS {
            for outcome in ["ok", "failed", "timeout"] {
                commands.command(&format!("executor-{e}"), outcome);
            }
            commands.duration(&format!("executor-{e}"), Duration::from_millis(3));
        }
        let metrics =
            Metrics::new(PipelineCollector::new(&pipeline), Arc::new(move || plugins.clone()), Arc::clone(&commands));

        let mut bytes = 0;
        for _ in 0..scrapes.min(50) {
            bytes = metrics.encode().len();
        }
        let mut took = Vec::with_capacity(scrapes);
        for _ in 0..scrapes {
            let started = Instant::now();
            let text = metrics.encode();
            took.push(started.elapsed());
            std::hint::black_box(text);
        }
        took.sort();
        println!();
        println!("| measure | p50 | p99 |");
        println!("|---|---|---|");
        println!(
            "| one /metrics scrape, {SOURCES} sources, {SINKS} sinks, {SOURCES} plugins, {EXECUTORS} executors ({} KiB of text), {scrapes} scrapes | {:?} | {:?} |",
            bytes / 1024,
            pick(&took, 0.5),
            pick(&took, 0.99)
        );
        pipeline.stop().await;
    });
}
