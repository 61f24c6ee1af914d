//! `plugboard run`: every long-running part of the host, wired together.
//!
//! Data flows one way: sources (and the host's own events) → the event queue
//! → the output. Executors are supervised beside them, and the HTTP server
//! exposes what components contribute.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::commands::automation::{self, AutomationRunner};
use super::commands::{self as chatops, CommandService};
use super::config::Config;
use super::executors::ExecutorPool;
use super::host_events::HostEvents;
use super::http;
use super::plan::Plan;
use super::sources::SourceSupervisor;

/// Events queued between the sources and the output before sources wait.
const EVENT_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
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
    tasks: Vec<JoinHandle<()>>,
    output: JoinHandle<()>,
}

impl Host {
    /// Starts sources, executors and the HTTP server.
    pub async fn start(plan: Plan, config: &Config, shutdown: CancellationToken) -> Result<Self, HostError> {
        let plan = Arc::new(plan);
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let host_events = HostEvents::new(tx.clone());
        let executors = Arc::new(ExecutorPool::new(&plan));
        let commands =
            Arc::new(CommandService::new(Arc::clone(&executors), &config.commands, Some(host_events.clone())));
        // Automations see every event on its way to the output.
        // TODO(pipeline merge): trigger them from the routes instead (AutomationRunner::trigger).
        let runner =
            Arc::new(AutomationRunner::new(config.automations.clone(), Arc::clone(&commands), host_events.clone()));
        let rx = if runner.is_empty() { rx } else { automation::tap(rx, runner, shutdown.clone()) };
        let output = tokio::spawn(super::output::print_events(rx));

        let mut tasks = Vec::new();
        for source in &plan.sources {
            let supervisor = SourceSupervisor::new(source.clone(), plan.start.clone(), plan.restart.clone(), None);
            tasks.push(tokio::spawn(supervisor.run(tx.clone(), shutdown.clone())));
        }
        drop(tx);
        tasks.extend(executors.supervise_all(&plan.restart, &shutdown));

        let http_addr = if config.http.enabled {
            let router = http::base_router().merge(chatops::http::router(
                Arc::clone(&commands),
                config.http.token.clone(),
                &config.commands,
            ));
            let (addr, task) = http::serve(&config.http, router, shutdown.clone())
                .await
                .map_err(|source| HostError::Listen { addr: config.http.listen, source })?;
            tracing::info!(addr = %addr, "http listening");
            tasks.push(task);
            Some(addr)
        } else {
            None
        };
        Ok(Self { plan, shutdown, host_events, executors, commands, http_addr, tasks, output })
    }

    /// Waits for shutdown, then for every part to stop (plugins shut down
    /// through their controller).
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        tracing::info!("shutting down");
        for task in self.tasks {
            let _ = task.await;
        }
        drop(self.host_events);
        // Commands hold a handle on the event queue (audit): let it go so the queue can close.
        drop(self.commands);
        let _ = self.output.await;
    }
}
