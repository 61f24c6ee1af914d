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
use std::time::Duration;

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
use super::sinks::{AutomationSlot, SinkSupervision};
use super::sources::{self as sources_mod, ClientSlot, CursorCell, SourceWorkload};
use super::store::StoreError;
use super::supervisor::{Kind, Lifecycle, State, Supervision, Supervisor};

/// How long open HTTP connections may hold up the end of a shutdown.
const HTTP_STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Plugin states for `/metrics`, read from the supervisor at scrape time.
fn plugin_samples(supervisor: Supervisor) -> PluginSamples {
    Arc::new(move || {
        supervisor
            .statuses()
            .into_iter()
            .map(|s| PluginSample {
                kind: s.kind.as_str().to_owned(),
                up: s.state == State::Running,
                restarts: u64::from(s.restarts),
                deactivated: s.state == State::Deactivated,
                last_exit_code: s.last_exit_code.or(s.last_exit_signal.map(|sig| 128 + sig)),
                instance: s.name,
                plugin: s.plugin,
            })
            .collect()
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
    /// Every plugin instance's process, supervised.
    pub supervisor: Supervisor,
    groups: Groups,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
    /// What `GET /readyz` checks.
    pub readiness: http::Readiness,
    pipeline: Pipeline,
    /// Per source: its HTTP forwarding slot and where it leaves its cursor (hot plug).
    source_state: HashMap<String, (ClientSlot, CursorCell)>,
    /// What sinks a reload adds are built with (hot plug).
    automations: AutomationSlot,
    sink_supervision: SinkSupervision,
    /// The HTTP server outlives the rest, so `/readyz` can say "shutting down".
    http: Option<Arc<http::listener::Listener>>,
    http_stop: CancellationToken,
    /// What a reload swaps in place (hot plug).
    live: super::reload::settings::LiveSettings,
}

/// Stop tokens of the instance kinds, cancelled in shutdown order: sources
/// first, executors once in-flight commands drained, sinks once the
/// pipeline delivered what it could.
#[derive(Default)]
struct Groups {
    sources: CancellationToken,
    executors: CancellationToken,
    sinks: CancellationToken,
}

impl Groups {
    async fn stop_all(&self, supervisor: &Supervisor) {
        for (token, kind) in
            [(&self.sources, Kind::Source), (&self.executors, Kind::Executor), (&self.sinks, Kind::Sink)]
        {
            token.cancel();
            supervisor.join(kind).await;
        }
    }
}

/// How long lifecycle events may take to reach the pipeline at shutdown.
const LIFECYCLE_FLUSH: Duration = Duration::from_secs(2);

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
        let (lifecycle, lifecycle_binder) = Lifecycle::new();
        let supervisor = Supervisor::new(lifecycle);
        let groups = Groups::default();
        let sink_supervision = SinkSupervision {
            supervisor: supervisor.clone(),
            group: groups.sinks.clone(),
            supervision: Supervision { restart: plan.restart.clone(), health: plan.health.clone() },
        };
        let sinks = plan
            .sinks
            .iter()
            .map(|p| (p.clone(), super::sinks::build(p, &plan.start, &automations, &sink_supervision)))
            .collect();
        let pipeline = match Pipeline::start(&state_dir, &pipeline_sources, sinks, Arc::clone(&plan.routing)) {
            Ok(pipeline) => pipeline,
            Err(e) => {
                groups.stop_all(&supervisor).await;
                return Err(e.into());
            }
        };
        tracing::info!(
            state_dir = %state_dir.display(),
            stored = pipeline.opened.last_seq,
            sinks = plan.sinks.len(),
            "event store open"
        );
        let Some(host_queue) = pipeline.queue(HOST_INSTANCE) else { unreachable!("the host queue is created above") };
        let host_events = HostEvents::new(host_queue);
        lifecycle_binder.bind(host_events.clone());
        let executors = Arc::new(ExecutorPool::new(&plan));
        let command_metrics = Arc::new(CommandMetrics::default());
        let commands = Arc::new(
            CommandService::new(Arc::clone(&executors), &config.commands, Some(host_events.clone()))
                .with_metrics(Arc::clone(&command_metrics)),
        );
        let automation_runner =
            Arc::new(AutomationRunner::new(config.automations.clone(), Arc::clone(&commands), host_events.clone()));
        automations.bind(Arc::clone(&automation_runner));

        let mut source_state = HashMap::new();
        for source in &plan.sources {
            let cursor = pipeline.opened.source_cursors.get(&source.name).cloned();
            let slot = ClientSlot::default();
            let Some(queue) = pipeline.queue(&source.name) else { continue };
            let cell = CursorCell::new(std::sync::Mutex::new(cursor.clone()));
            source_state.insert(source.name.clone(), (Arc::clone(&slot), Arc::clone(&cell)));
            let workload = SourceWorkload::new(source.clone(), cursor, queue, Arc::clone(&slot)).with_cursor_cell(cell);
            if let Err(e) =
                supervisor.spawn(sources_mod::spec(source, &plan.start), Box::new(workload), &groups.sources)
            {
                tracing::error!(source = %source.name, "{e}");
            }
        }
        let live = {
            let slots = source_state.iter().map(|(name, (slot, _))| (name.clone(), Arc::clone(slot))).collect();
            super::reload::settings::LiveSettings {
                commands: Arc::clone(&commands),
                automations: automation_runner,
                api_token: config.http.token.clone().into(),
                events_token: config.http.events_token.clone().or_else(|| config.http.token.clone()).into(),
                sources: http::sources::SourceMap::new(super::reload::settings::endpoints(&plan, config, &slots)),
            }
        };
        executors.supervise_all(&supervisor, &groups.executors);
        let metrics = Arc::new(Metrics::new(
            PipelineCollector::new(&pipeline),
            plugin_samples(supervisor.clone()),
            command_metrics,
        ));
        let readiness = {
            let store = pipeline.store.clone();
            http::Readiness::new(move || store.is_open())
        };
        let http_stop = CancellationToken::new();

        let http_addr = if config.http.enabled {
            let (store, counters, sink_set) =
                (pipeline.store.clone(), Arc::clone(&pipeline.counters), pipeline.sinks.clone());
            let token = &live.api_token;
            let router = http::base_router()
                .merge(http::events::router(http::events::EventsEndpoint::new(
                    pipeline.ingress.clone(),
                    live.events_token.clone(),
                )))
                .merge(http::sources::router(http::sources::SourcesEndpoint {
                    sources: live.sources.clone(),
                    ingress: pipeline.ingress.clone(),
                }))
                .merge(chatops::http::router(Arc::clone(&commands), token.clone(), &config.commands))
                .merge(http::plugins::router(supervisor.clone(), token.clone()))
                .merge(http::stats::router(
                    move || super::pipeline::stats_json(&store, &counters, &sink_set.stats()),
                    token.clone(),
                ))
                .merge(http::metrics::router(Arc::clone(&metrics), token.clone()))
                .merge(http::ready::router(readiness.clone()));
            match http::listener::Listener::start(&config.http, router, http_stop.clone(), &readiness).await {
                Ok(listener) => {
                    tracing::info!(addr = %listener.addr(), "http listening");
                    Some((listener.addr(), Arc::new(listener)))
                }
                Err(source) => {
                    shutdown.cancel();
                    groups.sources.cancel();
                    supervisor.join(Kind::Source).await;
                    groups.executors.cancel();
                    supervisor.join(Kind::Executor).await;
                    pipeline.stop_within(plan.shutdown.drain_timeout).await;
                    groups.stop_all(&supervisor).await;
                    return Err(HostError::Listen { addr: config.http.listen, source });
                }
            }
        } else {
            None
        };
        let (http_addr, http) = http_addr.unzip();
        Ok(Self {
            plan,
            shutdown,
            host_events,
            executors,
            commands,
            http_addr,
            state_dir,
            supervisor,
            groups,
            metrics,
            readiness,
            pipeline,
            source_state,
            automations,
            sink_supervision,
            http,
            http_stop,
            live,
        })
    }

    /// The controls a reload (hot plug) uses on single instances.
    pub fn instances(&self) -> Arc<dyn super::reload::Instances> {
        Arc::new(super::reload::running::HostInstances {
            supervisor: self.supervisor.clone(),
            executors: Arc::clone(&self.executors),
            queues: self.pipeline.queue_maker.clone(),
            source_group: self.groups.sources.clone(),
            executor_group: self.groups.executors.clone(),
            sources: std::sync::Mutex::new(self.source_state.clone()),
            stored_cursors: self.pipeline.opened.source_cursors.clone(),
            sinks: self.pipeline.sinks.clone(),
            automations: self.automations.clone(),
            sink_supervision: self.sink_supervision.clone(),
            settings: self.live.clone(),
            retired: Default::default(),
            http: self.http.clone(),
        })
    }

    /// Waits for shutdown, then stops in order: sources first (what they
    /// sent is queued), in-flight commands get up to `shutdown.drain_timeout`,
    /// executors stop, the pipeline stores what is queued and sinks deliver
    /// what they can within `drain_timeout`, then the sink plugins stop.
    /// Plugins stop through their controller; what lingers past `kill_grace`
    /// is killed with its process group.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.readiness.set_shutting_down();
        let drain = self.plan.shutdown.drain_timeout;
        tracing::info!("shutting down: stopping sources");
        self.groups.sources.cancel();
        self.supervisor.join(Kind::Source).await;

        let in_flight = self.executors.in_flight();
        if in_flight > 0 {
            tracing::info!(commands = in_flight, "waiting up to {drain:?} for running commands");
            if tokio::time::timeout(drain, self.executors.drain()).await.is_err() {
                tracing::warn!(
                    commands = self.executors.in_flight(),
                    "commands still running after shutdown.drain_timeout ({drain:?}); their plugins are stopped"
                );
            }
        }
        self.groups.executors.cancel();
        self.supervisor.join(Kind::Executor).await;
        // Lifecycle events of the stopped instances are stored too.
        let _ = tokio::time::timeout(LIFECYCLE_FLUSH, self.supervisor.lifecycle().flush()).await;
        drop(self.host_events);
        drop(self.commands);
        self.pipeline.stop_within(drain).await;
        self.groups.sinks.cancel();
        self.supervisor.join(Kind::Sink).await;
        // Last: until here `/readyz` answers 503 and `/metrics` still reads.
        self.http_stop.cancel();
        if let Some(http) = &self.http {
            http.stop(HTTP_STOP_DEADLINE).await;
        }
        tracing::info!("stopped");
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
