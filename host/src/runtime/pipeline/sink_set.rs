//! The running sinks: one dispatcher per sink, started and stopped one by
//! one (hot plug), and the routes they all follow, swapped in one step.
//!
//! Where a sink starts reading is the same at a start and at a reload: a
//! sink this store has a cursor for resumes there (no event is skipped); a
//! sink it never saw starts with the events stored from now on
//! (`plugboard events replay --since 1` backfills it). A sink stopped by a
//! reload leaves its cursor (and its counts) behind for when it comes back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::runtime::routing::Routing;
use crate::runtime::sinks::dispatcher::DispatchControl;
use crate::runtime::sinks::{Dispatcher, Sink, SinkPlan, SinkStats};
use crate::runtime::store::{Store, StoreError};

/// How long a stopped sink's delivery in flight may take before its
/// dispatcher is aborted (the batch is delivered again later: at-least-once).
const STOP_DEADLINE: Duration = Duration::from_secs(35);

/// Why a sink was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the event pipeline has shut down")]
    Closed,
    #[error("sink {0:?} is already running")]
    Running(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The running sinks. Cheap to clone.
#[derive(Clone)]
pub struct SinkSet {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    routing: watch::Sender<Arc<Routing>>,
    /// Cancelled at shutdown; every dispatcher's control is a child of it.
    control: DispatchControl,
    /// Sink cursors in the store when it was opened.
    stored_cursors: HashMap<String, u64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// In start order (the config's).
    running: Vec<Running>,
    /// Sinks a reload stopped: their stats hold where they stopped.
    stopped: HashMap<Arc<str>, Arc<SinkStats>>,
    /// Shut down: no dispatcher starts any more.
    closed: bool,
}

struct Running {
    name: Arc<str>,
    stats: Arc<SinkStats>,
    /// This dispatcher's own stop (a child of the shared one).
    stop: CancellationToken,
    /// Taken at shutdown (the sink stays listed in the stats until the end).
    task: Option<JoinHandle<()>>,
}

impl SinkSet {
    pub fn new(store: Store, routing: Arc<Routing>, stored_cursors: HashMap<String, u64>) -> Self {
        let (routing, _) = watch::channel(routing);
        let shared =
            Shared { store, routing, control: DispatchControl::default(), stored_cursors, state: Mutex::default() };
        Self { shared: Arc::new(shared) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `plan`'s dispatcher (see the module doc for where it starts
    /// reading), routed by the routes in force.
    pub fn start(&self, plan: &SinkPlan, sink: Box<dyn Sink>) -> Result<(), StartError> {
        let shared = &self.shared;
        let mut state = self.state();
        if state.closed {
            return Err(StartError::Closed);
        }
        if state.running.iter().any(|r| r.name == plan.name) {
            return Err(StartError::Running(plan.name.to_string()));
        }
        let (cursor, stats) = match state.stopped.get(&plan.name) {
            Some(stats) => (stats.cursor.load(Ordering::Relaxed), Some(Arc::clone(stats))),
            None => match shared.stored_cursors.get(&*plan.name) {
                Some(cursor) => (*cursor, None),
                None => {
                    let head = *shared.store.committed().borrow();
                    shared.store.set_sink_cursor(&plan.name, head);
                    (head, None)
                }
            },
        };
        let dispatcher = Dispatcher::new(plan, sink, shared.routing.subscribe(), shared.store.clone(), cursor, stats)?;
        state.stopped.remove(&plan.name);
        let control =
            DispatchControl { drain: shared.control.drain.child_token(), stop: shared.control.stop.child_token() };
        let stop = control.stop.clone();
        let stats = dispatcher.stats();
        tracing::debug!(sink = %plan.name, kind = plan.kind.name(), cursor, "sink dispatcher starting");
        let task = tokio::spawn(dispatcher.run(control));
        state.running.push(Running { name: Arc::clone(&plan.name), stats, stop, task: Some(task) });
        Ok(())
    }

    /// Stops the dispatcher of `name` once its delivery in flight is done
    /// (retries are cut short); its cursor is persisted and its sink closed
    /// (a plugin sink stops its process). `false` when it was not running.
    pub async fn stop(&self, name: &str) -> bool {
        let running = {
            let mut state = self.state();
            let Some(i) = state.running.iter().position(|r| &*r.name == name) else { return false };
            state.running.remove(i)
        };
        let Running { name, stats, stop, task } = running;
        stop.cancel();
        let Some(mut task) = task else { return true };
        if tokio::time::timeout(STOP_DEADLINE, &mut task).await.is_err() {
            tracing::warn!(sink = %name, "the sink's delivery did not end within {STOP_DEADLINE:?}: aborted (it is delivered again if the sink comes back)");
            task.abort();
            let _ = task.await;
        }
        self.state().stopped.insert(name, stats);
        true
    }

    /// Makes `routing` the routes every dispatcher follows, from its next batch on.
    pub fn swap_routes(&self, routing: Arc<Routing>) {
        self.shared.routing.send_replace(routing);
    }

    /// The running sinks' stats, in start order.
    pub fn stats(&self) -> Vec<(Arc<str>, Arc<SinkStats>)> {
        self.state().running.iter().map(|r| (Arc::clone(&r.name), Arc::clone(&r.stats))).collect()
    }

    /// Shutdown: the control every dispatcher follows, and their tasks (no
    /// dispatcher starts after this).
    pub(super) fn close(&self) -> (DispatchControl, Vec<JoinHandle<()>>) {
        let mut state = self.state();
        state.closed = true;
        let tasks = state.running.iter_mut().filter_map(|r| r.task.take()).collect();
        (self.shared.control.clone(), tasks)
    }
}
