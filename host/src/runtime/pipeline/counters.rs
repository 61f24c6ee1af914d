//! What the pipeline did with each source instance's events, counted since
//! the host started. (The store counts stored events and duplicates.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::catcher::QueueDepth;

/// Counters of one source instance.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Events the instance produced.
    pub received: AtomicU64,
    /// Rejected as invalid CloudEvents.
    pub invalid: AtomicU64,
    /// Dropped by `drop_types`.
    pub dropped: AtomicU64,
}

impl SourceCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.invalid.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Counters of every source instance: those of the start, and those a
/// reload adds (registered when their queue is made). A removed instance's
/// counters stay: they are totals since the host started.
///
/// The event path never touches the map: each queue's rules hold their
/// instance's [`SourceCounters`]. Only registration (a queue is made) and
/// readers (`/v1/stats`, `/metrics`, HTTP ingress) take the lock.
#[derive(Debug, Default)]
pub struct Counters {
    sources: RwLock<HashMap<Arc<str>, Registered>>,
}

#[derive(Debug, Default)]
struct Registered {
    counters: Arc<SourceCounters>,
    /// The depth of the instance's current queue (none for ingress-only ones).
    depth: Option<QueueDepth>,
}

/// One source instance's counters at one moment.
#[derive(Debug, Clone)]
pub struct SourceSnapshot {
    pub name: Arc<str>,
    pub received: u64,
    pub invalid: u64,
    pub dropped: u64,
    /// Events queued but not yet handed to the store.
    pub queued: usize,
}

impl Counters {
    pub fn new<'a>(instances: impl IntoIterator<Item = &'a Arc<str>>) -> Self {
        let sources = instances.into_iter().map(|i| (Arc::clone(i), Registered::default())).collect();
        Self { sources: RwLock::new(sources) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Registered>> {
        self.sources.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `instance` from now on (keeping its totals when it was known)
    /// and reads its queue's depth from `depth`; returns its counters.
    pub fn register(&self, instance: &Arc<str>, depth: Option<QueueDepth>) -> Arc<SourceCounters> {
        let mut sources = self.sources.write().unwrap_or_else(|e| e.into_inner());
        let entry = sources.entry(Arc::clone(instance)).or_default();
        if depth.is_some() {
            entry.depth = depth;
        }
        Arc::clone(&entry.counters)
    }

    /// The counters of `instance` (a fresh, unshared set for an unknown one).
    pub fn source(&self, instance: &str) -> Arc<SourceCounters> {
        self.read().get(instance).map(|r| Arc::clone(&r.counters)).unwrap_or_default()
    }

    /// Every instance's counters, sorted by name.
    pub fn snapshot(&self) -> Vec<SourceSnapshot> {
        let mut rows: Vec<SourceSnapshot> = self
            .read()
            .iter()
            .map(|(name, r)| {
                let (received, invalid, dropped) = r.counters.snapshot();
                let queued = r.depth.as_ref().map(QueueDepth::get).unwrap_or(0);
                SourceSnapshot { name: Arc::clone(name), received, invalid, dropped, queued }
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }
}
