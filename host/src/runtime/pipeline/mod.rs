//! The event pipeline: catch → persist → route → deliver.
//!
//! - [`catcher`]: one bounded queue per source instance, validation,
//!   `drop_types`, batches for the store's single writer;
//! - [`ingress`]: events someone waits on (HTTP), acknowledged once durable;
//! - [`crate::runtime::store`]: the durable store (dedupe, cursors);
//! - [`crate::runtime::routing`] and [`crate::runtime::sinks`]: one dispatcher
//!   per sink, each with its own cursor over the store.
//!
//! [`Pipeline`] wires them together and stops them in order.

pub mod catcher;
pub mod counters;
pub mod drop_types;
pub mod ingress;
pub mod sink_set;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use catcher::{QueueClosed, QueueDepth, QueueMaker, SourceQueue};
pub use counters::{Counters, SourceSnapshot};
pub use drop_types::DropTypes;
pub use ingress::{IngestError, IngestReport, Ingress};
pub use sink_set::SinkSet;

use super::routing::Routing;
use super::sinks::{Sink, SinkPlan, SinkStats};
use super::store::{Opened, Store, StoreError};

/// The pseudo source instance of events posted to `POST /v1/events`.
pub const HTTP_INSTANCE: &str = "http";
/// Events one source may have queued before its reader waits.
pub const SOURCE_QUEUE: usize = 2048;
/// How long sinks may take, at shutdown, to deliver what is stored.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// A source instance as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct PipelineSource {
    pub name: Arc<str>,
    pub drop_types: DropTypes,
    /// The plugin the instance runs (none for the pseudo instances), for logs.
    pub plugin: Option<Arc<str>>,
}

/// A running pipeline.
pub struct Pipeline {
    pub store: Store,
    pub ingress: Ingress,
    pub counters: Arc<Counters>,
    /// The queue of each source instance (and of the pseudo instances).
    pub queues: HashMap<Arc<str>, SourceQueue>,
    /// What the store held when it was opened (source cursors to resume from).
    pub opened: Opened,
    /// The running sinks (started and stopped one by one on hot plug) and their routes.
    pub sinks: SinkSet,
    /// Adds source queues while the pipeline runs (hot plug).
    pub queue_maker: QueueMaker,
    catcher_stop: CancellationToken,
    catcher: JoinHandle<()>,
}

impl Pipeline {
    /// Opens the store in `state_dir` and starts the catcher and one
    /// dispatcher per sink. `sources` should include the pseudo instances.
    pub fn start(
        state_dir: &Path,
        sources: &[PipelineSource],
        sinks: Vec<(SinkPlan, Box<dyn Sink>)>,
        routing: Arc<Routing>,
    ) -> Result<Self, StoreError> {
        let (store, opened) = Store::open(state_dir)?;
        let counters = Arc::new(Counters::new(sources.iter().map(|s| &s.name)));
        let mut catcher = catcher::Catcher::new(store.clone(), Arc::clone(&counters));
        let queues = sources
            .iter()
            .map(|s| {
                let queue = catcher.queue(Arc::clone(&s.name), SOURCE_QUEUE, s.drop_types.clone(), s.plugin.clone());
                (Arc::clone(&s.name), queue)
            })
            .collect();
        let drop_types =
            Arc::new(sources.iter().map(|s| (s.name.to_string(), s.drop_types.clone())).collect::<HashMap<_, _>>());
        let ingress = Ingress::new(store.clone(), drop_types, Arc::clone(&counters));

        // A new sink starts with the events stored from now on (see [`sink_set`]).
        let sink_set = SinkSet::new(store.clone(), routing, opened.sink_cursors.clone());
        for (plan, sink) in sinks {
            match sink_set.start(&plan, sink) {
                Ok(()) => {}
                Err(sink_set::StartError::Store(e)) => return Err(e),
                Err(e) => tracing::error!(sink = %plan.name, "{e}"),
            }
        }
        let queue_maker = catcher.queue_maker();
        let catcher_stop = CancellationToken::new();
        let catcher = tokio::spawn(catcher.run(catcher_stop.clone()));
        Ok(Self { store, ingress, counters, queues, opened, sinks: sink_set, queue_maker, catcher_stop, catcher })
    }

    /// The queue of `instance`.
    pub fn queue(&self, instance: &str) -> Option<SourceQueue> {
        self.queues.get(instance).cloned()
    }

    /// Stops in order, once the sources are stopped: queued events are
    /// stored, sinks get a few seconds to deliver what is stored, cursors are
    /// persisted, the store closes.
    pub async fn stop(self) {
        self.stop_within(DRAIN_DEADLINE).await
    }

    /// [`Pipeline::stop`], giving the store and the sinks up to `drain` each.
    pub async fn stop_within(self, drain: Duration) {
        let Pipeline { store, queues, catcher_stop, catcher, sinks, .. } = self;
        let (dispatch, mut dispatchers) = sinks.close();
        drop(queues);
        catcher_stop.cancel();
        let _ = catcher.await;
        // What the catcher handed over is committed before sinks drain.
        match tokio::time::timeout(drain, store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("cannot store the last events at shutdown: {e}"),
            Err(_) => tracing::error!("the event store did not commit within {drain:?} at shutdown"),
        }
        dispatch.drain.cancel();
        let drained = tokio::time::timeout(drain, async {
            for d in &mut dispatchers {
                let _ = d.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "sinks did not deliver everything within {drain:?}; the rest is delivered after the next start"
            );
            dispatch.stop.cancel();
            for d in dispatchers {
                if !d.is_finished() {
                    let _ = d.await;
                }
            }
        }
        store.close().await;
    }

    /// Counters of sources and sinks, as JSON (`GET /v1/stats`).
    pub fn stats_json(&self) -> serde_json::Value {
        stats_json(&self.store, &self.counters, &self.sinks.stats())
    }
}

/// Counters of sources and sinks, as JSON.
pub fn stats_json(store: &Store, counters: &Counters, sinks: &[(Arc<str>, Arc<SinkStats>)]) -> serde_json::Value {
    let stored = store.instance_counts();
    let sources: serde_json::Map<String, serde_json::Value> = counters
        .snapshot()
        .into_iter()
        .map(|c| {
            let s = stored.get(&c.name).copied().unwrap_or_default();
            (
                c.name.to_string(),
                serde_json::json!({
                    "received": c.received,
                    "invalid": c.invalid,
                    "dropped": c.dropped,
                    "stored": s.stored,
                    "duplicates": s.duplicates,
                }),
            )
        })
        .collect();
    let sinks: serde_json::Map<String, serde_json::Value> =
        sinks.iter().map(|(name, s)| (name.to_string(), s.to_json())).collect();
    serde_json::json!({
        "store": { "path": store.path(), "committed_seq": *store.committed().borrow() },
        "sources": sources,
        "sinks": sinks,
    })
}
