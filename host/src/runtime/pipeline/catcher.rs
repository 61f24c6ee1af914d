//! The event catcher (ManageIQ's pattern): every source stream is read by its
//! own task into its own bounded queue; one catcher validates what arrives,
//! drops what the operator does not want, and hands batches to the store's
//! single writer.
//!
//! The queues share one channel but each source holds its own permits, so a
//! flooding source fills only its own share: when it runs out, its reader
//! stops reading the gRPC stream (flow control pushes back on the plugin)
//! while every other source keeps flowing. Memory is bounded by the sum of
//! the permits plus the writer's queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard_proto::CloudEvent;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::counters::{Counters, SourceCounters};
use super::drop_types::DropTypes;
use crate::runtime::store::{EventBatch, Store};

/// Events taken from the queues per batch.
const CATCH_BATCH: usize = 2048;

/// The pipeline has shut down: stop reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event pipeline has shut down")]
pub struct QueueClosed;

struct Caught {
    instance: Arc<str>,
    event: CloudEvent,
    cursor: String,
    _permit: OwnedSemaphorePermit,
}

/// One source instance's bounded queue into the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct SourceQueue {
    instance: Arc<str>,
    permits: Arc<Semaphore>,
    capacity: usize,
    tx: mpsc::UnboundedSender<Caught>,
}

/// How many events a source has queued but the catcher has not yet handed
/// to the store, read from the queue's permits: nothing is counted on the
/// event path. Holds no sender, so it never keeps the pipeline open.
#[derive(Debug, Clone)]
pub struct QueueDepth {
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl QueueDepth {
    pub fn get(&self) -> usize {
        self.capacity.saturating_sub(self.permits.available_permits())
    }
}

impl std::fmt::Debug for SourceQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceQueue").field("instance", &self.instance).finish()
    }
}

impl SourceQueue {
    pub fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    /// A view of this queue's depth (for metrics).
    pub fn depth(&self) -> QueueDepth {
        QueueDepth { permits: Arc::clone(&self.permits), capacity: self.capacity }
    }

    /// Queues an event with the cursor marking its position (may be empty),
    /// waiting while this source's share of the queue is full.
    pub async fn send(&self, event: CloudEvent, cursor: String) -> Result<(), QueueClosed> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| QueueClosed)?;
        let caught = Caught { instance: Arc::clone(&self.instance), event, cursor, _permit: permit };
        self.tx.send(caught).map_err(|_| QueueClosed)
    }
}

/// What the catcher applies to one instance's events.
struct Rules {
    drop_types: DropTypes,
    plugin: Option<Arc<str>>,
    counters: Arc<SourceCounters>,
    invalid_log: LogLimiter,
}

/// The rules of every instance, shared with [`QueueMaker`]s so queues can be
/// added while the catcher runs (hot plug). Locked once per batch.
type SharedRules = Arc<std::sync::Mutex<HashMap<Arc<str>, Rules>>>;

/// Creates queues; the catcher task runs [`Catcher::run`].
pub struct Catcher {
    store: Store,
    rx: mpsc::UnboundedReceiver<Caught>,
    tx: mpsc::UnboundedSender<Caught>,
    rules: SharedRules,
    counters: Arc<Counters>,
}

/// Adds source queues to a running catcher. Holds no queue open: once the
/// catcher stopped, it makes none.
#[derive(Clone)]
pub struct QueueMaker {
    tx: mpsc::WeakUnboundedSender<Caught>,
    rules: SharedRules,
    counters: Arc<Counters>,
}

impl QueueMaker {
    /// A queue of `capacity` events for `instance` (replacing the rules of
    /// an earlier instance of that name), or `None` after shutdown.
    pub fn queue(
        &self,
        instance: Arc<str>,
        capacity: usize,
        drop_types: DropTypes,
        plugin: Option<Arc<str>>,
    ) -> Option<SourceQueue> {
        let tx = self.tx.upgrade()?;
        Some(make_queue(&self.rules, &self.counters, tx, instance, capacity, drop_types, plugin))
    }
}

fn make_queue(
    rules: &SharedRules,
    counters: &Counters,
    tx: mpsc::UnboundedSender<Caught>,
    instance: Arc<str>,
    capacity: usize,
    drop_types: DropTypes,
    plugin: Option<Arc<str>>,
) -> SourceQueue {
    let capacity = capacity.max(1);
    let queue = SourceQueue { instance, permits: Arc::new(Semaphore::new(capacity)), capacity, tx };
    // An instance added by a reload is counted like one of the start.
    let new = Rules {
        drop_types,
        plugin,
        counters: counters.register(&queue.instance, Some(queue.depth())),
        invalid_log: LogLimiter::new(Duration::from_secs(60), 10),
    };
    rules.lock().unwrap_or_else(|e| e.into_inner()).insert(Arc::clone(&queue.instance), new);
    queue
}

impl Catcher {
    pub fn new(store: Store, counters: Arc<Counters>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { store, rx, tx, rules: SharedRules::default(), counters }
    }

    /// A queue of `capacity` events for `instance` (which runs `plugin`).
    pub fn queue(
        &mut self,
        instance: Arc<str>,
        capacity: usize,
        drop_types: DropTypes,
        plugin: Option<Arc<str>>,
    ) -> SourceQueue {
        make_queue(&self.rules, &self.counters, self.tx.clone(), instance, capacity, drop_types, plugin)
    }

    /// Makes queues later, while the catcher runs.
    pub fn queue_maker(&self) -> QueueMaker {
        QueueMaker { tx: self.tx.downgrade(), rules: Arc::clone(&self.rules), counters: Arc::clone(&self.counters) }
    }

    /// Runs until every queue is dropped, or `stop` is cancelled; then takes
    /// what is still queued to the store and returns.
    pub async fn run(self, stop: CancellationToken) {
        // From here on only the queues keep the channel open.
        let Catcher { store, mut rx, tx, rules, .. } = self;
        drop(tx);
        let mut caught = Vec::with_capacity(CATCH_BATCH);
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut caught, CATCH_BATCH) => n,
                _ = stop.cancelled() => {
                    // Refuse new events; what is queued still goes to the store.
                    rx.close();
                    rx.recv_many(&mut caught, CATCH_BATCH).await
                }
            };
            if n == 0 {
                break;
            }
            let batch = {
                let mut rules = rules.lock().unwrap_or_else(|e| e.into_inner());
                catch(&mut rules, &mut caught, store.batch(CATCH_BATCH))
            };
            if !batch.is_empty() && store.submit(batch).await.is_err() {
                tracing::error!("the event store shut down before the catcher: events still queued are not stored");
                break;
            }
        }
        tracing::debug!("event catcher stopped");
    }
}

/// Validates, filters and batches what was caught.
fn catch(rules: &mut HashMap<Arc<str>, Rules>, caught: &mut Vec<Caught>, mut batch: EventBatch) -> EventBatch {
    for c in caught.drain(..) {
        let Some(rules) = rules.get_mut(&c.instance) else { continue };
        SourceCounters::add(&rules.counters.received, 1);
        if let Err(e) = plugboard_proto::event::validate(&c.event) {
            SourceCounters::add(&rules.counters.invalid, 1);
            if let Some(suppressed) = rules.invalid_log.allow() {
                tracing::warn!(
                    source = %c.instance,
                    instance = %c.instance,
                    plugin = rules.plugin.as_deref(),
                    id = %c.event.id,
                    suppressed,
                    "rejected an invalid event: {e}"
                );
            }
        } else if rules.drop_types.drops(&c.event.r#type) {
            SourceCounters::add(&rules.counters.dropped, 1);
            tracing::trace!(source = %c.instance, id = %c.event.id, ty = %c.event.r#type, "dropped by drop_types");
        } else {
            batch.push(Arc::clone(&c.instance), c.event);
        }
        // The stream moved past this event whatever became of it.
        if !c.cursor.is_empty() {
            batch.set_cursor(&c.instance, c.cursor);
        }
    }
    batch
}

/// Lets a few log lines through per window, so a plugin that floods invalid
/// events cannot flood the log; the next allowed line says how many were
/// suppressed.
struct LogLimiter {
    window: Duration,
    per_window: u32,
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    fn new(window: Duration, per_window: u32) -> Self {
        Self { window, per_window, started: Instant::now(), logged: 0, suppressed: 0 }
    }

    /// `Some(suppressed since the last line)` when this one may be logged.
    fn allow(&mut self) -> Option<u64> {
        if self.started.elapsed() >= self.window {
            self.started = Instant::now();
            self.logged = 0;
        }
        if self.logged < self.per_window {
            self.logged += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> CloudEvent {
        CloudEvent {
            id: id.into(),
            source: "/s".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            ..Default::default()
        }
    }

    /// A full queue makes its own source wait, and only its own: another
    /// source's events still go in. Once the catcher runs, all are stored.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_queue_holds_back_only_its_own_source() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let counters = Arc::new(Counters::new([&Arc::from("flood"), &Arc::from("calm")]));
        let mut catcher = Catcher::new(store.clone(), counters);
        let flood = catcher.queue(Arc::from("flood"), 4, DropTypes::default(), None);
        let calm = catcher.queue(Arc::from("calm"), 4, DropTypes::default(), None);
        let (flood_depth, calm_depth) = (flood.depth(), calm.depth());
        for i in 0..4 {
            flood.send(event(&format!("f{i}")), i.to_string()).await.unwrap();
        }
        assert_eq!((flood_depth.get(), calm_depth.get()), (4, 0));
        // The catcher is not running: the flood's fifth event must wait...
        let blocked = tokio::time::timeout(Duration::from_millis(100), flood.send(event("f4"), "4".into())).await;
        assert!(blocked.is_err(), "a full queue accepted another event");
        // ... while the calm source is not held up by it.
        tokio::time::timeout(Duration::from_secs(5), calm.send(event("c0"), "0".into()))
            .await
            .expect("the calm source was blocked by the flood")
            .unwrap();

        let stop = CancellationToken::new();
        let task = tokio::spawn(catcher.run(stop.clone()));
        flood.send(event("f4"), "4".into()).await.unwrap();
        drop((flood, calm));
        task.await.unwrap();
        // Handed to the store: nothing is queued any more.
        assert_eq!((flood_depth.get(), calm_depth.get()), (0, 0));
        store.flush().await.unwrap();
        let mut reader = store.reader().unwrap();
        let mut ids: Vec<String> =
            reader.list(&Default::default()).unwrap().into_iter().map(|e| e.stored.event.id).collect();
        ids.sort();
        assert_eq!(ids, ["c0", "f0", "f1", "f2", "f3", "f4"]);
        store.close().await;
        drop(store);
        let (_, opened) = Store::open(dir.path()).unwrap();
        assert_eq!(opened.source_cursors["flood"], "4");
        assert_eq!(opened.source_cursors["calm"], "0");
    }

    #[test]
    fn the_log_limiter_lets_a_few_lines_through_per_window() {
        let mut l = LogLimiter::new(Duration::from_secs(3600), 2);
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.started -= Duration::from_secs(3601);
        assert_eq!(l.allow(), Some(2));
    }
}
