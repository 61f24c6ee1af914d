//! `plugboard run`: every long-running part of the host, wired together.
//!
//! Data flows one way: sources (and the host's own events, and HTTP ingress)
//! → the pipeline (catcher → durable store → one dispatcher per sink).
//! Executors are supervised beside them, and the HTTP server exposes what
//! components contribute.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::commands::automation::AutomationRunner;
use super::commands::{self as chatops, CommandService};
use super::config::Config;
use super::executors::ExecutorPool;
use super::host_events::{HOST_INSTANCE, HostEvents};
use super::http;
use super::metrics::{CommandMetrics, Metrics, PipelineCollector, PluginSample, PluginSamples};
use super::pipeline::{DropTypes, HTTP_INSTANCE, Pipeline, PipelineSource};
use super::plan::Plan;
use super::routing::SinkRoutes;
use super::sinks::AutomationSlot;
use super::sources::{ClientSlot, SourceSupervisor};
use super::store::StoreError;

/// How long open HTTP connections may hold up the end of a shutdown.
const HTTP_STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Plugin states for `/metrics` from what the runtime exposes today: whether
/// each source and executor instance has a running process. Restarts,
/// deactivation and exit codes come with the supervisor's statuses.
fn running_plugins(
    plan: &Plan,
    sources: Vec<(String, String, ClientSlot)>,
    executors: Arc<ExecutorPool>,
) -> PluginSamples {
    let executor_plugins: Vec<(String, String)> =
        plan.executors.iter().map(|e| (e.name.clone(), e.plugin.info.name.clone())).collect();
    let sample = |instance: &str, kind: &str, plugin: &str, up: bool| PluginSample {
        instance: instance.to_owned(),
        kind: kind.to_owned(),
        plugin: plugin.to_owned(),
        up,
        restarts: 0,
        deactivated: false,
        last_exit_code: None,
    };
    Arc::new(move || {
        let sources = sources.iter().map(|(instance, plugin, slot)| {
            sample(instance, "source", plugin, slot.read().is_ok_and(|client| client.is_some()))
        });
        let executors = executor_plugins.iter().map(|(instance, plugin)| {
            sample(instance, "executor", plugin, executors.instance(instance).is_some_and(|i| i.is_running()))
        });
        sources.chain(executors).collect()
    })
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A running host.
pub struct Host {
    pub plan: Arc<Plan>,
    pub shutdown: CancellationToken,
    pub host_events: HostEvents,
    pub executors: Arc<ExecutorPool>,
    /// The command service every command surface shares.
    pub commands: Arc<CommandService>,
    /// Where the HTTP server listens, when enabled.
    pub http_addr: Option<SocketAddr>,
    /// Where the event store lives.
    pub state_dir: PathBuf,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
    /// What `GET /readyz` checks.
    pub readiness: http::Readiness,
    sources: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    pipeline: Pipeline,
    /// The HTTP server outlives the rest, so `/readyz` can say "shutting down".
    http_task: Option<JoinHandle<()>>,
    http_stop: CancellationToken,
}

impl Host {
    /// Opens the event store, then starts the sinks, sources, executors and
    /// the HTTP server.
    pub async fn start(plan: Plan, config: &Config, shutdown: CancellationToken) -> Result<Self, HostError> {
        let plan = Arc::new(plan);
        let state_dir = config.state_dir.clone().unwrap_or_else(super::state::default_state_dir);
        let mut pipeline_sources: Vec<PipelineSource> = plan
            .sources
            .iter()
            .map(|s| PipelineSource {
                name: Arc::from(s.name.as_str()),
                drop_types: s.drop_types.clone(),
                plugin: Some(Arc::from(s.plugin.info.name.as_str())),
            })
            .collect();
        for pseudo in [HOST_INSTANCE, HTTP_INSTANCE] {
            pipeline_sources.push(PipelineSource {
                name: Arc::from(pseudo),
                drop_types: DropTypes::default(),
                plugin: None,
            });
        }
        for sink in &plan.sinks {
            if let SinkRoutes::Routes(routes) = plan.routing.for_sink(&sink.name)
                && routes.is_empty()
            {
                tracing::warn!(sink = %sink.name, "no route names this sink: it receives no events");
            }
        }
        // Automations are sinks fed by the store (durable, routed like any
        // sink); their runner needs the command service, which needs the
        // host's event queue, which the pipeline creates: it is bound once
        // the pipeline is up.
        let automations = AutomationSlot::default();
        let sinks = plan.sinks.iter().map(|p| (p.clone(), super::sinks::build(p, &plan.start, &automations))).collect();
        let pipeline = Pipeline::start(&state_dir, &pipeline_sources, sinks, &plan.routing)?;
        tracing::info!(
            state_dir = %state_dir.display(),
            stored = pipeline.opened.last_seq,
            sinks = plan.sinks.len(),
            "event store open"
        );
        let Some(host_queue) = pipeline.queue(HOST_INSTANCE) else { unreachable!("the host queue is created above") };
        let host_events = HostEvents::new(host_queue);
        let executors = Arc::new(ExecutorPool::new(&plan));
        let command_metrics = Arc::new(CommandMetrics::default());
        let commands = Arc::new(
            CommandService::new(Arc::clone(&executors), &config.commands, Some(host_events.clone()))
                .with_metrics(Arc::clone(&command_metrics)),
        );
        automations.bind(Arc::new(AutomationRunner::new(
            config.automations.clone(),
            Arc::clone(&commands),
            host_events.clone(),
        )));

        let mut sources = Vec::new();
        let mut endpoints = HashMap::new();
        let mut source_slots = Vec::new();
        for source in &plan.sources {
            let cursor = pipeline.opened.source_cursors.get(&source.name).cloned();
            let slot = ClientSlot::default();
            let Some(queue) = pipeline.queue(&source.name) else { continue };
            let supervisor = SourceSupervisor::new(source.clone(), plan.start.clone(), plan.restart.clone(), cursor)
                .with_client_slot(Arc::clone(&slot));
            sources.push(tokio::spawn(supervisor.run(queue, shutdown.clone())));
            source_slots.push((source.name.clone(), source.plugin.info.name.clone(), Arc::clone(&slot)));
            endpoints.insert(
                source.name.clone(),
                http::sources::SourceEndpoint {
                    name: Arc::from(source.name.as_str()),
                    plugin: source.plugin.info.name.clone(),
                    config: source.config.clone(),
                    token: source.http_token.clone().or_else(|| config.http.token.clone()),
                    client: slot,
                },
            );
        }
        let tasks = executors.supervise_all(&plan.restart, &shutdown);
        let metrics = Arc::new(Metrics::new(
            PipelineCollector::new(&pipeline),
            running_plugins(&plan, source_slots, Arc::clone(&executors)),
            command_metrics,
        ));
        let readiness = {
            let store = pipeline.store.clone();
            http::Readiness::new(move || store.is_open())
        };
        let http_stop = CancellationToken::new();

        let http_addr = if config.http.enabled {
            let (store, counters, sink_stats) =
                (pipeline.store.clone(), Arc::clone(&pipeline.counters), pipeline.sinks.clone());
            let events_token = config.http.events_token.clone().or_else(|| config.http.token.clone());
            let router = http::base_router()
                .merge(http::events::router(http::events::EventsEndpoint::new(pipeline.ingress.clone(), events_token)))
                .merge(http::sources::router(http::sources::SourcesEndpoint {
                    sources: endpoints,
                    ingress: pipeline.ingress.clone(),
                }))
                .merge(chatops::http::router(Arc::clone(&commands), config.http.token.clone(), &config.commands))
                .merge(http::stats::router(
                    move || super::pipeline::stats_json(&store, &counters, &sink_stats),
                    config.http.token.clone(),
                ))
                .merge(http::metrics::router(Arc::clone(&metrics), config.http.token.clone()))
                .merge(http::ready::router(readiness.clone()));
            match http::serve(&config.http, router, http_stop.clone(), &readiness).await {
                Ok((addr, task)) => {
                    tracing::info!(addr = %addr, "http listening");
                    Some((addr, task))
                }
                Err(source) => {
                    shutdown.cancel();
                    for task in sources.into_iter().chain(tasks) {
                        let _ = task.await;
                    }
                    pipeline.stop().await;
                    return Err(HostError::Listen { addr: config.http.listen, source });
                }
            }
        } else {
            None
        };
        let (http_addr, http_task) = http_addr.unzip();
        Ok(Self {
            plan,
            shutdown,
            host_events,
            executors,
            commands,
            http_addr,
            state_dir,
            metrics,
            readiness,
            sources,
            tasks,
            pipeline,
            http_task,
            http_stop,
        })
    }

    /// Waits for shutdown, then for every part to stop (plugins shut down
    /// through their controller), then stops the pipeline: what the sources
    /// sent is stored, sinks deliver what they can, cursors are persisted.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.readiness.set_shutting_down();
        tracing::info!("shutting down");
        for task in self.sources.into_iter().chain(self.tasks) {
            let _ = task.await;
        }
        drop(self.host_events);
        drop(self.commands);
        self.pipeline.stop().await;
        // Last: until here `/readyz` answers 503 and `/metrics` still reads.
        self.http_stop.cancel();
        if let Some(task) = self.http_task
            && tokio::time::timeout(HTTP_STOP_DEADLINE, task).await.is_err()
        {
            tracing::warn!("the HTTP server did not close its connections within {HTTP_STOP_DEADLINE:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::store::{ListFilter, Reader};

    /// Host events take the same path as source events, under the
    /// `plugboard` instance, and reach the sinks.
    #[tokio::test(flavor = "multi_thread")]
    async fn host_events_are_stored_under_the_plugboard_instance_and_delivered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        let out = dir.path().join("out.jsonl");
        let config = Config::parse(&format!(
            "state_dir: {}\nhttp: {{ enabled: false }}\nsinks:\n  - name: out\n    file: {{ path: {} }}\n",
            dir.path().join("state").display(),
            out.display()
        ))
        .unwrap();
        let registry = crate::runtime::registry::Registry::discover(&dir.path().join("plugins"), &Default::default())
            .await
            .unwrap();
        let plan = crate::runtime::plan::plan(&config, &registry, "test".into()).unwrap();
        let shutdown = CancellationToken::new();
        let host = Host::start(plan, &config, shutdown.clone()).await.unwrap();
        let mut event = HostEvents::event("dev.plugboard.audit");
        event.id = "audit-1".into();
        assert!(host.host_events.emit(event).await);
        shutdown.cancel();
        host.wait().await;

        let listed = Reader::open(&dir.path().join("state")).unwrap().list(&ListFilter::default()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(&*listed[0].stored.instance, HOST_INSTANCE);
        assert_eq!(listed[0].stored.event.id, "audit-1");
        assert_eq!(listed[0].stored.event.source, crate::runtime::host_events::HOST_SOURCE);
        // Stored before the host stopped, and delivered at shutdown.
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("\"id\":\"audit-1\""), "{text}");
    }
}
