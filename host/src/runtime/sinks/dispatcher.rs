//! One sink's delivery loop: read the events after the sink's cursor (from
//! the in-memory tail, or the store when it fell behind), keep the ones its
//! routes match, deliver them with retries (exponential backoff, jitter),
//! dead-letter what still fails, then move and persist the cursor. Delivery
//! is at-least-once: the cursor moves only after delivery, and a restarted
//! host resumes from the persisted cursor.
//!
//! Replay requests (`plugboard events replay`) are picked up from the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::config::{RetryConfig, SinkPlan};
use super::{DeliveryError, Sink};
use crate::runtime::routing::{Routing, SinkRoutes};
use crate::runtime::store::{Replay, SharedReader, Store, StoreError, StoredEvent, TailRead};

/// How often a dispatcher looks for replay requests.
const REPLAY_POLL: Duration = Duration::from_secs(1);
/// How long a moved cursor may wait before it is persisted: at low rates
/// this saves a transaction per delivery; a crash may redeliver at most
/// this much (at-least-once).
const CURSOR_PERSIST_DELAY: Duration = Duration::from_millis(100);

/// What a sink did, since the host started.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Every event up to this seq is dealt with.
    pub cursor: AtomicU64,
    pub delivered: AtomicU64,
    /// Events its routes did not select.
    pub skipped: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl SinkStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "cursor": self.cursor.load(Ordering::Relaxed),
            "delivered": self.delivered.load(Ordering::Relaxed),
            "skipped": self.skipped.load(Ordering::Relaxed),
            "failed_attempts": self.failed_attempts.load(Ordering::Relaxed),
            "dead_lettered": self.dead_lettered.load(Ordering::Relaxed),
            "last_error": *self.last_error.lock().unwrap_or_else(|e| e.into_inner()),
        })
    }
}

/// The routes in force; a reload sends new ones.
pub type RoutingWatch = tokio::sync::watch::Receiver<Arc<Routing>>;

/// How a dispatcher is told to stop.
#[derive(Clone, Default)]
pub struct DispatchControl {
    /// Deliver what is committed, then stop.
    pub drain: CancellationToken,
    /// Stop now, mid-retry if need be (the cursor stays where it is).
    pub stop: CancellationToken,
}

/// The delivery loop of one sink.
pub struct Dispatcher {
    name: Arc<str>,
    /// The plugin of a plugin sink, for logs.
    plugin: Option<Arc<str>>,
    sink: Box<dyn Sink>,
    /// What this sink's routes select, taken from `routing` (the routes in
    /// force, swapped by a reload): looked at once per batch, recomputed only
    /// when a new routing was sent, so the event path takes no lock.
    routes: SinkRoutes,
    routing: RoutingWatch,
    store: Store,
    reader: SharedReader,
    retry: RetryConfig,
    batch_size: usize,
    cursor: u64,
    /// When the moved cursor is due to be persisted (`None`: it is).
    persist_due: Option<tokio::time::Instant>,
    stats: Arc<SinkStats>,
}

/// A delivery stopped because the host is stopping.
struct Stopped;

impl Dispatcher {
    /// The dispatcher of `plan`'s sink from `cursor` on, routed by what
    /// `routing` holds now and whatever is sent to it later. `stats` carries
    /// on the counts of an earlier dispatcher of the same sink (a restart).
    pub fn new(
        plan: &SinkPlan,
        sink: Box<dyn Sink>,
        mut routing: RoutingWatch,
        store: Store,
        cursor: u64,
        stats: Option<Arc<SinkStats>>,
    ) -> Result<Self, StoreError> {
        let reader = SharedReader::new(store.reader()?);
        let stats = stats.unwrap_or_default();
        stats.cursor.store(cursor, Ordering::Relaxed);
        let routes = routing.borrow_and_update().for_sink(&plan.name);
        let plugin = match &plan.kind {
            super::SinkKind::Plugin { plugin, .. } => Some(Arc::from(plugin.info.name.as_str())),
            _ => None,
        };
        Ok(Self {
            name: Arc::clone(&plan.name),
            plugin,
            sink,
            routes,
            routing,
            store,
            reader,
            retry: plan.retry.clone(),
            batch_size: plan.batch_size.max(1),
            cursor,
            persist_due: None,
            stats,
        })
    }

    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }

    pub async fn run(mut self, control: DispatchControl) {
        self.sink.start().await;
        let mut committed = self.store.committed();
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut draining = false;
        let mut replays_checked: Option<Instant> = None;
        loop {
            if control.stop.is_cancelled() {
                break;
            }
            if self.persist_due.is_some_and(|due| due <= tokio::time::Instant::now()) {
                self.persist_cursor();
            }
            if replays_checked.is_none_or(|t| t.elapsed() >= REPLAY_POLL) {
                replays_checked = Some(Instant::now());
                if self.apply_replays(&control).await.is_err() {
                    break;
                }
            }
            let head = *committed.borrow_and_update();
            if self.cursor >= head {
                if draining {
                    break;
                }
                let persist_due = self.persist_due.unwrap_or_else(|| tokio::time::Instant::now() + REPLAY_POLL);
                tokio::select! {
                    changed = committed.changed() => if changed.is_err() { draining = true },
                    _ = tokio::time::sleep(REPLAY_POLL) => {}
                    _ = tokio::time::sleep_until(persist_due), if self.persist_due.is_some() => {}
                    _ = control.drain.cancelled(), if !draining => draining = true,
                    _ = control.stop.cancelled() => break,
                }
                continue;
            }
            batch.clear();
            if let Err(e) = self.fetch(&mut batch).await {
                tracing::error!(sink = %self.name, instance = %self.name, plugin = self.plugin.as_deref(), "cannot read the event store: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = control.stop.cancelled() => break,
                }
            }
            let Some(last) = batch.last().map(|e| e.seq) else {
                // Committed but not visible to this reader yet: look again shortly.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            // One atomic load per batch; a swapped routing applies from this batch on.
            if self.routing.has_changed().unwrap_or(false) {
                self.routes = self.routing.borrow_and_update().for_sink(&self.name);
            }
            let total = batch.len();
            batch.retain(|e| self.routes.matches(e));
            SinkStats::add(&self.stats.skipped, (total - batch.len()) as u64);
            if !batch.is_empty() && self.deliver(&batch, false, &control).await.is_err() {
                break;
            }
            self.advance(last);
        }
        self.persist_cursor();
        self.sink.close().await;
        tracing::debug!(sink = %self.name, instance = %self.name, plugin = self.plugin.as_deref(), cursor = self.cursor, "sink dispatcher stopped");
    }

    /// Moves the cursor; it is persisted within [`CURSOR_PERSIST_DELAY`].
    fn advance(&mut self, seq: u64) {
        self.cursor = seq;
        self.stats.cursor.store(seq, Ordering::Relaxed);
        self.persist_due.get_or_insert_with(|| tokio::time::Instant::now() + CURSOR_PERSIST_DELAY);
    }

    fn persist_cursor(&mut self) {
        if self.persist_due.take().is_some() {
            self.store.set_sink_cursor(&self.name, self.cursor);
        }
    }

    /// The next events after the cursor: from memory when the tail has them.
    async fn fetch(&mut self, out: &mut Vec<Arc<StoredEvent>>) -> Result<(), StoreError> {
        if let TailRead::Read(_) = self.store.tail().read_after(self.cursor, self.batch_size, out) {
            return Ok(());
        }
        let (after, limit) = (self.cursor, self.batch_size);
        let events = self
            .reader
            .call(move |r| {
                let mut events = Vec::with_capacity(limit);
                r.events_after(after, limit, &mut events)?;
                Ok(events)
            })
            .await?;
        out.extend(events);
        Ok(())
    }

    /// Delivers `events` with retries; what still fails is dead-lettered.
    /// With `replaying`, delivered events leave the dead letters.
    async fn deliver(
        &mut self,
        events: &[Arc<StoredEvent>],
        replaying: bool,
        control: &DispatchControl,
    ) -> Result<(), Stopped> {
        let mut pending = events;
        let mut attempts: u32 = 0;
        while !pending.is_empty() {
            attempts += 1;
            let error = match self.sink.deliver(pending).await {
                Ok(()) => {
                    self.delivered(pending, replaying);
                    return Ok(());
                }
                Err(e) => e,
            };
            let DeliveryError { delivered, message, permanent } = error;
            if delivered > 0 {
                let (done, rest) = pending.split_at(delivered.min(pending.len()));
                self.delivered(done, replaying);
                pending = rest;
                // Progress: the next event starts with fresh attempts.
                attempts = 1;
            }
            if pending.is_empty() {
                return Ok(());
            }
            SinkStats::add(&self.stats.failed_attempts, 1);
            *self.stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
            if permanent || attempts >= self.retry.max_attempts {
                // A permanent refusal concerns the event at the head only.
                let dead = if permanent { &pending[..1] } else { pending };
                for stored in dead {
                    self.store.dead_letter(&self.name, stored.seq, attempts, &message);
                }
                SinkStats::add(&self.stats.dead_lettered, dead.len() as u64);
                tracing::warn!(
                    sink = %self.name, instance = %self.name, plugin = self.plugin.as_deref(),
                    attempts,
                    events = dead.len(),
                    first_seq = dead[0].seq,
                    "dead-lettered after {}: {message}",
                    if permanent { "a permanent refusal" } else { "the last retry" }
                );
                pending = &pending[dead.len()..];
                attempts = 0;
                continue;
            }
            let delay = self.retry.delay(attempts);
            tracing::warn!(sink = %self.name, instance = %self.name, plugin = self.plugin.as_deref(), attempts, seq = pending[0].seq, "delivery failed: {message}; retrying in {delay:?}");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = control.stop.cancelled() => return Err(Stopped),
            }
        }
        Ok(())
    }

    fn delivered(&self, events: &[Arc<StoredEvent>], replaying: bool) {
        SinkStats::add(&self.stats.delivered, events.len() as u64);
        if replaying {
            for stored in events {
                self.store.clear_dead_letter(&self.name, stored.seq);
            }
        }
    }

    /// Applies pending `events replay` requests for this sink.
    async fn apply_replays(&mut self, control: &DispatchControl) -> Result<(), Stopped> {
        let name = self.name.to_string();
        let replays = match self.reader.call(move |r| r.replays(&name)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(sink = %self.name, instance = %self.name, plugin = self.plugin.as_deref(), "cannot read replay requests: {e}");
                return Ok(());
            }
        };
        for Replay { id, since, .. } in replays {
            match since {
                Some(since) => {
                    // Rewind only: a replay never skips undelivered events.
                    let cursor = since.saturating_sub(1).min(self.cursor);
                    tracing::info!(sink = %self.name, instance = %self.name, plugin = self.plugin.as_deref(), since, "replaying every event from seq {since}");
                    self.store.clear_dead_letters_from(&self.name, since);
                    self.advance(cursor);
                    self.persist_cursor();
                }
                None => self.replay_dead_letters(control).await?,
            }
            self.store.replay_done(id);
        }
        Ok(())
    }

    async fn replay_dead_letters(&mut self, control: &DispatchControl) -> Result<(), Stopped> {
        let name = self.name.to_string();
        let events = self
            .reader
            .call(move |r| {
                let seqs: Vec<u64> = r.dead_letters(Some(&name))?.into_iter().map(|d| d.seq).collect();
                r.events_by_seq(&seqs)
            })
            .await;
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(sink = %self.name, instance = %self.name, plugin = self.plugin.as_deref(), "cannot read dead letters to replay: {e}");
                return Ok(());
            }
        };
        tracing::info!(sink = %self.name, instance = %self.name, plugin = self.plugin.as_deref(), events = events.len(), "replaying dead letters");
        for chunk in events.chunks(self.batch_size) {
            self.deliver(chunk, true, control).await?;
        }
        Ok(())
    }
}
